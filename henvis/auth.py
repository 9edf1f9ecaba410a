"""API credentials: every HTTP client has its own bearer token and one role (DESIGN §6.4).

Tokens are never stored: the client list holds their SHA-256 (tokens are 256-bit random,
so a fast hash is enough) and is read from ``HENVIS_API_CLIENTS_FILE`` (YAML or JSON, in
production a mounted Secret) or ``HENVIS_API_CLIENTS`` (JSON).  Roles:

* ``police`` — post consent decisions and withdrawals;
* ``centre:<slug>`` — one centre's machine client (its case system);
* ``researcher`` — read aggregate statistics;
* ``auditor`` — read the centres' access log;
* ``operator`` — operational endpoints.

``henvis token new --name NAME --role ROLE`` prints a fresh token once and the line to add
to the client list.

With an identity provider (``HENVIS_ACCESS_TOKEN_ISSUER``) systems send OAuth2 access tokens
instead (:mod:`henvis.access_tokens`); the static list then stays off unless
``HENVIS_API_STATIC_TOKENS=true`` keeps it as an explicit fallback (docs/operators-guide.md §11).
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import re
import secrets
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from henvis.access_tokens import (
    AccessTokenPolicy,
    AccessTokenVerifier,
    JwksSource,
    KeysUnavailable,
    TokenNotForThisApi,
    TokenRefused,
)

ROLE_PATTERN = r"^(police|researcher|auditor|operator|manual-handling|centre:[a-z][a-z0-9-]{1,39})$"


class ApiClient(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
    role: str = Field(pattern=ROLE_PATTERN)
    token_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")

    @property
    def centre(self) -> str | None:
        """The centre slug of a ``centre:<slug>`` client."""
        return self.role.split(":", 1)[1] if self.role.startswith("centre:") else None


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> str:
    return "hv_" + secrets.token_urlsafe(32)


class ClientRegistry:
    """The machines that may call: static tokens, OAuth2 access tokens, or both.

    ``clients`` are the static tokens' clients (looked up in constant time per client);
    ``access_tokens`` checks JWTs from the identity provider.  A token that looks like a
    JWT (three dot-separated parts) goes to the verifier, anything else to the static list.
    """

    def __init__(self, clients: list[ApiClient], access_tokens: AccessTokenVerifier | None = None):
        self._clients = list(clients)
        self.access_tokens = access_tokens

    def authenticate(self, token: str | None) -> ApiClient | None:
        """The client of ``token`` (its first role), or None when it cannot be admitted here."""
        try:
            return self.identify(token)[0]
        except (TokenRefused, TokenNotForThisApi, KeysUnavailable):
            return None

    def identifies_from_memory(self, token: str | None) -> bool:
        """True when :meth:`identify` needs no network for ``token``: none, a static token, or
        an access token that passed before and still holds (a new one may need the provider's
        keys fetched, up to the fetch timeout)."""
        if not token or self.access_tokens is None or not _looks_like_jwt(token):
            return True
        return self.access_tokens.remembers(token)

    def identify(self, token: str | None) -> list[ApiClient]:
        """The client of ``token``, once per henvis role it holds.

        :class:`TokenRefused` (reason safe to log) when it is no valid credential; from an
        access token also :class:`~henvis.access_tokens.TokenNotForThisApi` and
        :class:`~henvis.access_tokens.KeysUnavailable`.
        """
        if not token:
            raise TokenRefused("no bearer token")
        if self.access_tokens is not None and _looks_like_jwt(token):
            holder = self.access_tokens.verify(token)
            try:
                return [ApiClient(name=holder.name, role=role, token_sha256=hash_token(token)) for role in holder.roles]
            except ValidationError as exc:  # a client id or centre slug henvis cannot name
                raise TokenRefused("client id or centre claim not in henvis's form") from exc
        if not self._clients:
            raise TokenRefused("static tokens are off" if self.access_tokens else "unknown token")
        digest = hash_token(token)
        found = None
        for client in self._clients:
            if hmac.compare_digest(client.token_sha256, digest):
                found = client
        if found is None:
            raise TokenRefused("unknown token")
        return [found]

    @classmethod
    def load(cls, file: Path | None = None, inline_json: str | None = None) -> ClientRegistry:
        return cls(static_clients(file, inline_json))

    @classmethod
    def from_settings(cls, settings) -> ClientRegistry:
        """The clients a service's settings (:class:`henvis.settings.ServiceSettings`) admit."""
        verifier = access_token_verifier(settings)
        static = settings.api_static_tokens if settings.api_static_tokens is not None else verifier is None
        if not static and verifier is None:
            raise ValueError("HENVIS_API_STATIC_TOKENS=false needs HENVIS_ACCESS_TOKEN_ISSUER (no client could call)")
        clients = static_clients(settings.api_clients_file, settings.api_clients) if static else []
        return cls(clients, verifier)


def static_clients(file: Path | None = None, inline_json: str | None = None) -> list[ApiClient]:
    """The static tokens' clients listed in ``file`` (YAML or JSON) and ``inline_json``."""
    entries: list = []
    if file:
        entries += yaml.safe_load(Path(file).read_text(encoding="utf-8")) or []
    if inline_json:
        entries += json.loads(inline_json)
    return TypeAdapter(list[ApiClient]).validate_python(entries)


def access_token_verifier(settings) -> AccessTokenVerifier | None:
    """The access-token check of a service, None when no issuer is configured."""
    tokens = settings.access_tokens
    if not tokens.issuer:
        return None
    policy = AccessTokenPolicy(
        issuer=tokens.issuer,
        audience=settings.access_token_audience,
        other_henvis_audiences=frozenset(tokens.henvis_audience_list()) - {settings.access_token_audience},
        algorithms=tuple(tokens.algorithm_list()),
        leeway_seconds=tokens.leeway_seconds,
        roles_claim=tokens.roles_claim,
        role_map=dict(tokens.role_map),
        centre_claim=tokens.centre_claim,
        client_claims=tuple(tokens.client_claim_list()),
        jwks_url=tokens.jwks_url,
    )
    source = JwksSource(tokens.issuer, jwks_url=tokens.jwks_url, min_refresh_seconds=tokens.jwks_min_refresh_seconds)
    return AccessTokenVerifier(policy, source)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="henvis token", description="Make API credentials.")
    sub = parser.add_subparsers(dest="command", required=True)
    new = sub.add_parser("new", help="print a new token and its client-list entry")
    new.add_argument("--name", required=True)
    new.add_argument("--role", required=True, help="police | researcher | auditor | operator | centre:<slug>")
    args = parser.parse_args(argv)
    if not re.match(ROLE_PATTERN, args.role):
        parser.error(f"--role must match {ROLE_PATTERN}")
    token = new_token()
    client = ApiClient(name=args.name, role=args.role, token_sha256=hash_token(token))
    print(f"token (give it to the client, it is not stored): {token}")
    print("client-list entry (HENVIS_API_CLIENTS_FILE):")
    print(yaml.safe_dump([client.model_dump()], sort_keys=False).rstrip())
    return 0


def _looks_like_jwt(token: str) -> bool:
    """Three dot-separated parts: goes to the access-token verifier, not the static list."""
    return token.count(".") == 2
