"""OpenID Connect login for people: settings, the authlib client, and the claim mapping.

A service whose pages people sign in to (the centre inbox; later the researchers' page and
the auditor's log) mixes :class:`OidcLoginSettings` into its one settings model, so each
deployment names its provider (issuer, client, scopes), how the provider's claims map to
henvis's roles and centres, and the authentication context (``acr``) a login must carry.

The protocol is authlib's: authorization code with PKCE (S256), ``state`` and ``nonce``
checked by authlib, the ID token's signature, issuer, audience and expiry checked against
the provider's published keys. What henvis adds is pure: :func:`map_login` turns verified
claims into a :class:`Login` or a :class:`LoginRefused` that says why.

``state`` is single use on the server: authlib keeps each flow's data in
:class:`FlowCache` (this process) and only a marker in the browser's short-lived flow
cookie, so a replayed callback finds nothing, even with the old cookie.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field
from typing import Any, Literal

import authlib.deprecate
import httpx
from joserfc.errors import JoseError
from pydantic import BaseModel, Field, SecretStr, model_validator
from starlette.requests import Request

with warnings.catch_warnings():
    # authlib warns on import that it uses httpx, not its successor httpx2, which henvis cannot
    # install yet (pyproject.toml): a line on every `henvis` command's stderr otherwise.
    warnings.filterwarnings(
        "ignore", message="The httpx module is deprecated", category=authlib.deprecate.AuthlibDeprecationWarning
    )
    from authlib.integrations.base_client import MismatchingStateError, OAuthError
    from authlib.integrations.starlette_client import OAuth

#: The roles a person can have in henvis (the machine roles are henvis.auth's).
PERSON_ROLES = ("caseworker", "researcher", "auditor")


class OidcLoginSettings(BaseModel):
    """Login fields mixed into a service's settings model (``HENVIS_<SERVICE>_LOGIN`` ...)."""

    login: Literal["password", "oidc"] = Field(
        default="password",
        description="password: henvis's own users (the demo, a deployment without a provider); oidc: the provider.",
    )
    oidc_issuer: str | None = Field(
        default=None,
        pattern=r"^https?://",
        description="The provider's issuer URL; its /.well-known/openid-configuration is read at the first login.",
    )
    oidc_client_id: str | None = None
    oidc_client_secret: SecretStr | None = None
    oidc_scopes: str = Field(default="openid profile", description="Scopes asked for, space-separated.")
    oidc_roles_claim: str = Field(
        default="henvis_roles",
        description="Claim with the person's roles or groups (dots walk into objects: realm_access.roles).",
    )
    oidc_role_map: dict[str, str] = Field(
        default_factory=dict,
        description='Provider value -> henvis role, JSON, e.g. {"<Entra group id>": "caseworker"}; unset: same names.',
    )
    oidc_centre_claim: str = Field(default="groups", description="Claim that names the person's centre.")
    oidc_centre_prefix: str = Field(
        default="/centres/", description="A value of that claim with this prefix names a centre by its slug."
    )
    oidc_centre_map: dict[str, str] = Field(
        default_factory=dict, description='Provider value -> centre slug, JSON, e.g. {"<group id>": "herning"}.'
    )
    oidc_username_claim: str = Field(default="preferred_username", description="Claim shown and logged as the user.")
    oidc_required_acr: str | None = Field(
        default=None,
        description="The authentication context (acr) a login must carry, e.g. substantial (NSIS); asked for too.",
    )
    oidc_acr_claim: str = Field(
        default="acr",
        description="Claim that carries the assurance level (a broker may pass a SAML IdP's NSIS level in its own).",
    )
    oidc_post_logout_url: str | None = Field(
        default=None,
        pattern=r"^https?://",
        description="Where the provider sends the browser after sign-out; default this service's /login.",
    )

    @model_validator(mode="after")
    def _oidc_is_complete(self):
        if self.login == "oidc" and not (self.oidc_issuer and self.oidc_client_id and self.oidc_client_secret):
            raise ValueError("login=oidc needs the OIDC issuer, client id and client secret")
        return self

    def oidc_mapping(self) -> ClaimMapping:
        """The claim mapping of these settings."""
        return ClaimMapping(
            roles_claim=self.oidc_roles_claim,
            role_map=dict(self.oidc_role_map),
            centre_claim=self.oidc_centre_claim,
            centre_prefix=self.oidc_centre_prefix,
            centre_map=dict(self.oidc_centre_map),
            username_claim=self.oidc_username_claim,
            required_acr=self.oidc_required_acr,
            acr_claim=self.oidc_acr_claim,
        )


# --------------------------------------------------------------------------- the claim mapping (pure)


@dataclass(frozen=True)
class ClaimMapping:
    roles_claim: str = "henvis_roles"
    role_map: dict[str, str] = field(default_factory=dict)
    centre_claim: str = "groups"
    centre_prefix: str = "/centres/"
    centre_map: dict[str, str] = field(default_factory=dict)
    username_claim: str = "preferred_username"
    required_acr: str | None = None
    acr_claim: str = "acr"


@dataclass(frozen=True)
class Login:
    """A person the provider vouched for, in henvis's terms."""

    username: str
    roles: frozenset[str]
    centres: frozenset[str]


@dataclass(frozen=True)
class LoginRefused:
    """Why a verified login is still not let in: ``reason`` for the log, the rest for the page."""

    reason: Literal[
        "acr_insufficient",
        "no_role",
        "no_centre",
        "centre_not_served",
        "no_username",
        "state_unknown_or_replayed",
        "provider_error",
        "id_token_invalid",
        "id_token_missing",
        "provider_unreachable",
    ]
    detail: str = ""


def _claim(claims: dict[str, Any], path: str) -> Any:
    value: Any = claims
    for part in path.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


def _values(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [item for item in value if isinstance(item, str)]
    return []


def map_login(claims: dict[str, Any], mapping: ClaimMapping) -> Login | LoginRefused:
    """The henvis login the verified ID-token ``claims`` describe, or why there is none."""
    given_acr = _claim(claims, mapping.acr_claim)
    if mapping.required_acr is not None and given_acr != mapping.required_acr:
        return LoginRefused("acr_insufficient", str(given_acr or "none"))
    username = claims.get(mapping.username_claim) or claims.get("sub")
    if not isinstance(username, str) or not username:
        return LoginRefused("no_username")
    provider_roles = _values(_claim(claims, mapping.roles_claim))
    roles = {mapping.role_map.get(role, role) for role in provider_roles} & set(PERSON_ROLES)
    if not roles:
        return LoginRefused("no_role")
    centres = set()
    for value in _values(_claim(claims, mapping.centre_claim)):
        if value in mapping.centre_map:
            centres.add(mapping.centre_map[value])
        elif mapping.centre_prefix and value.startswith(mapping.centre_prefix):
            centres.add(value.removeprefix(mapping.centre_prefix))
    return Login(username[:64], frozenset(roles), frozenset(centres))


def caseworker_centre(login: Login, served: list[str]) -> str | LoginRefused:
    """The one served centre a caseworker's login belongs to, or why it is refused."""
    if "caseworker" not in login.roles:
        return LoginRefused("no_role")
    mine = sorted(login.centres & set(served))
    if not login.centres:
        return LoginRefused("no_centre")
    if len(mine) != 1:
        return LoginRefused("centre_not_served")
    return mine[0]


# --------------------------------------------------------------------------- authlib wiring


class FlowCache:
    """authlib's state store, in this process: each flow's data is used once, then gone.

    Several replicas behind a load balancer need the callback on the replica that started the
    flow (session affinity), or a shared store with the same three methods.
    """

    def __init__(self, max_entries: int = 10_000, max_age_seconds: float = 600):
        self._entries: dict[str, tuple[float, str]] = {}
        self.max_entries = max_entries
        #: a login may take this long (the flow cookie lives as long)
        self.max_age_seconds = max_age_seconds

    async def get(self, key: str) -> str | None:
        entry = self._entries.get(key)
        if entry is None or entry[0] < time.monotonic():
            self._entries.pop(key, None)
            return None
        return entry[1]

    async def set(self, key: str, value: str, expires: int | None = None) -> None:
        now = time.monotonic()
        if len(self._entries) >= self.max_entries:
            self._entries = {k: v for k, v in self._entries.items() if v[0] >= now}
        while len(self._entries) >= self.max_entries:  # a flood of started logins: the oldest go first
            self._entries.pop(next(iter(self._entries)))
        self._entries[key] = (now + min(expires or self.max_age_seconds, self.max_age_seconds), value)

    async def delete(self, key: str) -> None:
        self._entries.pop(key, None)


def oauth_client(settings: OidcLoginSettings, name: str = "henvis"):
    """The authlib Starlette client of these settings (discovery is read lazily, at the first login)."""
    assert settings.oidc_issuer and settings.oidc_client_id and settings.oidc_client_secret
    oauth = OAuth(cache=FlowCache())
    return oauth.register(
        name=name,
        server_metadata_url=f"{settings.oidc_issuer.rstrip('/')}/.well-known/openid-configuration",
        client_id=settings.oidc_client_id,
        client_secret=settings.oidc_client_secret.get_secret_value(),
        client_kwargs={"scope": settings.oidc_scopes, "code_challenge_method": "S256"},
    )


def authorize_params(settings: OidcLoginSettings) -> dict[str, str]:
    """Extra parameters of the authorization request: the acr a login must reach (asked, then checked)."""
    return {"acr_values": settings.oidc_required_acr} if settings.oidc_required_acr else {}


@dataclass(frozen=True)
class ProviderAnswer:
    """The provider's verified answer to a login: the ID token's claims, and the token for the sign-out."""

    claims: dict[str, Any]
    id_token: str | None


async def complete_login(client, request: Request) -> ProviderAnswer | LoginRefused:
    """The callback's code exchanged and checked by authlib (state, PKCE, nonce, ID token), or why not.

    The refusal's detail names what failed (an error code, a claim's name), never a value.
    """
    try:
        token = await client.authorize_access_token(request)
    except MismatchingStateError:
        return LoginRefused("state_unknown_or_replayed")
    except OAuthError as exc:  # the error code from the callback's query: shortened, it is anyone's text
        return LoginRefused("provider_error", str(exc.error)[:64])
    except JoseError as exc:
        return LoginRefused("id_token_invalid", str(getattr(exc, "claim", None) or exc.error))
    except httpx.HTTPError as exc:
        return LoginRefused("provider_unreachable", type(exc).__name__)
    claims = dict(token.get("userinfo") or {})
    if not claims:
        return LoginRefused("id_token_missing")
    return ProviderAnswer(claims, token.get("id_token"))
