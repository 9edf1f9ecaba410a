"""Machines' OAuth2 access tokens: JWTs from the deployment's identity provider.

A system (the police case system, a centre's case system) gets an access token from the
provider with the client-credentials grant and sends it as ``Authorization: Bearer``.
:class:`AccessTokenVerifier` accepts it only if

* its header names an algorithm of the allow-list (RS256, ES256, PS256 by default; never
  ``none``, never an HMAC algorithm, which would let the provider's *public* key sign);
* its signature verifies with the key its ``kid`` names in the provider's JWKS (found by
  OpenID discovery, cached, fetched again, at most once a ``jwks_min_refresh_seconds``,
  when a token names a key the cache does not hold: the provider rotated its keys);
* ``iss`` is the configured issuer, ``exp`` has not passed and ``nbf`` has (a small
  leeway for clock skew);
* ``aud`` names this API; a token for another henvis API is genuine but not for here
  (:class:`TokenNotForThisApi`, a 403), any other audience is refused;
* a role claim names at least one henvis role (through a configurable mapping); a centre
  system's token also names its centre.

Every refusal is a :class:`TokenRefused` with a short fixed reason that is safe to log: it
never contains the token or anything taken from it.  Key fetches use :mod:`httpx` without
``async``: they are rare (start, rotation) and bounded by a short timeout.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx
import structlog
from joserfc import jws
from joserfc.errors import ExpiredTokenError, InvalidClaimError, InvalidKeyIdError, JoseError, MissingClaimError
from joserfc.jwk import KeySet, import_key
from joserfc.jwt import JWTClaimsRegistry

log = structlog.get_logger("henvis.access_tokens")

#: Asymmetric signature algorithms an operator may allow; ``none`` and HS* are never allowed.
SUPPORTED_ALGORITHMS = frozenset(
    {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}
)
DEFAULT_ALGORITHMS = ("RS256", "ES256", "PS256")
#: henvis's roles a token may carry (``centre`` becomes ``centre:<slug>`` with the centre claim).
HENVIS_ROLES = frozenset({"police", "researcher", "auditor", "operator", "manual-handling", "centre"})
CENTRE_ROLE = "centre"
#: A role map may also name one centre's role outright (Entra ID app role ``Henvis.Centre.Herning``).
CENTRE_ROLE_PATTERN = re.compile(r"^centre:[a-z][a-z0-9-]{1,39}$")


class TokenRefused(Exception):
    """Not a valid access token: 401.  ``reason`` is a fixed phrase, safe to log."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class TokenNotForThisApi(Exception):
    """A valid token issued for another henvis API (its audience): 403."""


class KeysUnavailable(Exception):
    """The provider's keys cannot be fetched, so no token can be checked: 503."""


@dataclass(frozen=True)
class TokenHolder:
    """Who a valid token speaks for: the client's id and its henvis roles."""

    name: str
    roles: tuple[str, ...]


@dataclass(frozen=True)
class AccessTokenPolicy:
    """What a token must be to be accepted (all from the service's settings)."""

    issuer: str
    audience: str
    #: Audiences of the deployment's other henvis APIs: a token for one of them is a 403 here.
    other_henvis_audiences: frozenset[str] = frozenset()
    algorithms: tuple[str, ...] = DEFAULT_ALGORITHMS
    leeway_seconds: int = 30
    #: Claim holding the roles: a list, a space-separated string (``scope``) or a dotted path.
    roles_claim: str = "henvis_roles"
    #: Provider value -> henvis role (e.g. Entra app role ``Henvis.Police`` -> ``police``, or
    #: ``Henvis.Centre.Herning`` -> ``centre:herning``, which needs no centre claim).
    #: henvis's own role names are always understood as themselves.
    role_map: Mapping[str, str] = field(default_factory=dict)
    centre_claim: str = "henvis_centre"
    #: The first of these claims present names the client in the request log.
    client_claims: tuple[str, ...] = ("client_id", "azp", "appid")
    #: The JWKS address, when the issuer serves no discovery document (Entra ID v1 tokens).
    jwks_url: str | None = None

    def __post_init__(self) -> None:
        refused = [alg for alg in self.algorithms if alg not in SUPPORTED_ALGORITHMS]
        if refused or not self.algorithms:
            raise ValueError(
                f"access-token algorithms must be asymmetric signature algorithms of {sorted(SUPPORTED_ALGORITHMS)};"
                f" refused: {refused or 'an empty list'}"
            )
        unknown = sorted(
            {
                role
                for role in self.role_map.values()
                if role not in HENVIS_ROLES and not CENTRE_ROLE_PATTERN.match(role)
            }
        )
        if unknown:
            raise ValueError(f"the access-token role map names roles henvis does not have: {unknown}")


def holder_of(claims: Mapping[str, Any], policy: AccessTokenPolicy) -> TokenHolder:
    """The client and henvis roles of verified ``claims``; TokenRefused without a usable role."""
    raw = _claim(claims, policy.roles_claim)
    if raw is None:
        raise TokenRefused("missing role claim")
    values = raw.split() if isinstance(raw, str) else raw if isinstance(raw, list) else None
    if values is None or not all(isinstance(value, str) for value in values):
        raise TokenRefused("role claim is neither a list nor a string")
    roles: list[str] = []
    for value in values:
        role = policy.role_map.get(value) or (value if value in HENVIS_ROLES else None)
        if role == CENTRE_ROLE:
            centre = claims.get(policy.centre_claim)
            if not isinstance(centre, str) or not centre:
                raise TokenRefused("centre role without a centre claim")
            role = f"centre:{centre}"
        if role and role not in roles:
            roles.append(role)
    if not roles:
        raise TokenRefused("no henvis role in the role claim")
    name = next((claims[claim] for claim in policy.client_claims if isinstance(claims.get(claim), str)), None)
    if not name:
        raise TokenRefused("no client id claim")
    return TokenHolder(name=name, roles=tuple(roles))


def _claim(claims: Mapping[str, Any], path: str) -> Any:
    """``claims[path]``, following dots into objects (``realm_access.roles``) if no claim has the whole name."""
    if path in claims:
        return claims[path]
    value: Any = claims
    for part in path.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return None
        value = value[part]
    return value


class JwksSource:
    """The issuer's signing keys, found by OpenID discovery and cached.

    :meth:`keys` fetches them on first use; :meth:`refresh` fetches them again when a token
    names an unknown key (the provider rotated its keys), but at most once every
    ``min_refresh_seconds``, so a stream of tokens with made-up key ids cannot make henvis
    hammer the provider.  While the provider cannot be reached and no keys are cached, it
    is asked at most once every ``retry_seconds``; requests in between get
    :class:`KeysUnavailable` at once instead of each waiting for a timeout.

    Only asymmetric signing keys are taken (``kty`` RSA, EC, OKP; ``use`` sig or unset); a
    key of another kind, or one joserfc cannot read, is skipped, not fatal to the rest.
    """

    def __init__(
        self,
        issuer: str,
        *,
        jwks_url: str | None = None,
        min_refresh_seconds: float = 60.0,
        timeout_seconds: float = 3.0,
        retry_seconds: float = 5.0,
    ):
        self.issuer = issuer.rstrip("/")
        self.min_refresh_seconds = min_refresh_seconds
        self.timeout_seconds = timeout_seconds
        self.retry_seconds = retry_seconds
        self._failed_at = float("-inf")
        self._lock = threading.Lock()
        self._keys: KeySet | None = None
        self._jwks_uri: str | None = jwks_url
        self._refreshed_at = float("-inf")

    def keys(self) -> KeySet:
        """The cached key set, fetched if there is none yet; KeysUnavailable when it cannot be."""
        with self._lock:
            if self._keys is None:
                if time.monotonic() - self._failed_at < self.retry_seconds:
                    raise KeysUnavailable("the identity provider's keys could not be fetched a moment ago")
                self._fetch()
            assert self._keys is not None
            return self._keys

    def refresh(self) -> bool:
        """Fetch the keys again unless that was done within ``min_refresh_seconds``; True if fetched."""
        with self._lock:
            if time.monotonic() - self._refreshed_at < self.min_refresh_seconds:
                return False
            self._refreshed_at = time.monotonic()
            self._fetch()
            return True

    def _fetch(self) -> None:
        try:
            with httpx.Client(timeout=self.timeout_seconds, follow_redirects=False) as http:
                if self._jwks_uri is None:
                    discovery = http.get(f"{self.issuer}/.well-known/openid-configuration")
                    discovery.raise_for_status()
                    self._jwks_uri = str(discovery.json()["jwks_uri"])
                answer = http.get(self._jwks_uri)
                answer.raise_for_status()
                document = answer.json()
            keys = _signing_keys(document["keys"])
            if not keys:
                raise ValueError("no usable signing key")
            self._keys = KeySet(keys)
        except (httpx.HTTPError, ValueError, KeyError, TypeError) as exc:
            log.warning("jwks_fetch_failed", issuer=self.issuer, error_type=type(exc).__name__)
            if self._keys is None:
                self._failed_at = time.monotonic()
                raise KeysUnavailable("the identity provider's keys could not be fetched") from exc
        else:
            log.info("jwks_fetched", issuer=self.issuer, keys=len(keys), skipped=len(document["keys"]) - len(keys))


def _signing_keys(entries: list) -> list:
    """The JWKS entries that are asymmetric signing keys joserfc can read."""
    keys = []
    for entry in entries:
        if not isinstance(entry, dict) or entry.get("kty") not in ("RSA", "EC", "OKP"):
            continue
        if entry.get("use", "sig") != "sig":
            continue
        try:
            keys.append(import_key(entry))
        except (JoseError, ValueError, TypeError):
            continue
    return keys


class AccessTokenVerifier:
    """Checks access tokens against a :class:`AccessTokenPolicy` and the issuer's keys.

    A system reuses its token for minutes, so a token that passed is remembered (by its
    SHA-256, up to ``cache_size`` of them) until its ``exp``: a full check (RS256) costs
    about a hundred times a static token's lookup, a remembered token a few times
    (bench/access_tokens.py).  Refusals are not remembered.  ``now`` is the clock (seconds
    since the epoch), for tests.
    """

    def __init__(
        self,
        policy: AccessTokenPolicy,
        keys: JwksSource | None = None,
        *,
        cache_size: int = 1024,
        now: Callable[[], float] = time.time,
    ):
        self.policy = policy
        self.source = keys or JwksSource(policy.issuer, jwks_url=policy.jwks_url)
        self.cache_size = cache_size
        self.now = now
        self._passed: dict[bytes, tuple[TokenHolder, float]] = {}
        self._cache_lock = threading.Lock()

    def remembers(self, token: str) -> bool:
        """True when ``token`` passed before and still holds: :meth:`verify` answers it from
        memory, without the provider's keys (so without a possible fetch)."""
        return self._remembered(hashlib.sha256(token.encode()).digest()) is not None

    def verify(self, token: str) -> TokenHolder:
        """The holder of ``token``; TokenRefused (401), TokenNotForThisApi (403) or KeysUnavailable (503)."""
        digest = hashlib.sha256(token.encode()).digest()
        remembered = self._remembered(digest)
        if remembered is not None:
            return remembered
        holder, expires = self._check(token)
        with self._cache_lock:
            self._passed.pop(digest, None)
            self._passed[digest] = (holder, expires)
            while len(self._passed) > self.cache_size:
                del self._passed[next(iter(self._passed))]  # the oldest
        return holder

    def _remembered(self, digest: bytes) -> TokenHolder | None:
        remembered = self._passed.get(digest)
        return remembered[0] if remembered is not None and self.now() < remembered[1] else None

    def _check(self, token: str) -> tuple[TokenHolder, float]:
        """The holder and until when (``exp`` plus the leeway) the token holds."""
        try:
            signed = jws.extract_compact(token.encode("ascii"))
            header = signed.headers()
        except (JoseError, ValueError, UnicodeError, TypeError) as exc:
            raise TokenRefused("not a signed JWT") from exc
        if header.get("alg") not in self.policy.algorithms:
            raise TokenRefused("signature algorithm not allowed")
        if not self._signature_verifies(signed):
            raise TokenRefused("bad signature")
        try:
            claims = json.loads(signed.payload)
        except (TypeError, ValueError) as exc:
            raise TokenRefused("payload is not JSON") from exc
        if not isinstance(claims, dict):
            raise TokenRefused("payload is not a JSON object")
        self._check_claims(claims)
        return holder_of(claims, self.policy), float(claims["exp"]) + self.policy.leeway_seconds

    def _signature_verifies(self, signed: jws.CompactSignature) -> bool:
        keys = self.source.keys()
        try:
            return jws.validate_compact(signed, keys, self.policy.algorithms)
        except InvalidKeyIdError:
            pass
        except JoseError as exc:  # a key of the wrong type for the algorithm, a bad header
            raise TokenRefused("signature cannot be checked with the named key") from exc
        # The provider may have rotated its keys since they were fetched.
        if not self.source.refresh():
            raise TokenRefused("unknown key id")
        try:
            return jws.validate_compact(signed, self.source.keys(), self.policy.algorithms)
        except InvalidKeyIdError as exc:
            raise TokenRefused("unknown key id") from exc
        except JoseError as exc:
            raise TokenRefused("signature cannot be checked with the named key") from exc

    def _check_claims(self, claims: dict[str, Any]) -> None:
        registry = JWTClaimsRegistry(
            now=lambda: int(self.now()),
            leeway=self.policy.leeway_seconds,
            iss={"essential": True, "value": self.policy.issuer},
            exp={"essential": True},
            aud={"essential": True},
        )
        try:
            registry.validate(claims)
        except ExpiredTokenError as exc:
            raise TokenRefused("expired") from exc
        except MissingClaimError as exc:
            raise TokenRefused(f"missing claim: {exc.claim}") from exc
        except InvalidClaimError as exc:
            raise TokenRefused(_INVALID_CLAIM_REASONS.get(exc.claim, f"invalid claim: {exc.claim}")) from exc
        audiences = _as_set(claims["aud"])
        if self.policy.audience not in audiences:
            if audiences & self.policy.other_henvis_audiences:
                raise TokenNotForThisApi()
            raise TokenRefused("wrong audience")


_INVALID_CLAIM_REASONS = {"iss": "wrong issuer", "nbf": "not yet valid", "iat": "issued in the future"}


def _as_set(audience: str | Iterable[str]) -> frozenset[str]:
    return frozenset({audience}) if isinstance(audience, str) else frozenset(audience)
