"""henvis as an OAuth2 client of its own APIs: access tokens by the client-credentials grant.

The centre inbox calls the consent service's key store on behalf of each centre it serves.
With an identity provider, each centre's inbox is a confidential client of the provider
(role ``centre``, its centre slug in the centre claim, audience ``henvis-consent-api``) and
sends the access token :class:`ClientCredentials` gets and keeps until shortly before it
expires.  The token endpoint is found by OpenID discovery from the issuer, unless given.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Generator

import httpx
import structlog

log = structlog.get_logger("henvis.client_credentials")


class TokenUnavailable(RuntimeError):
    """The provider gave no access token (unreachable, or refused the client)."""


class ClientCredentials:
    """A cached access token of one client, fetched again ``renew_before_seconds`` before it expires."""

    def __init__(
        self,
        issuer: str,
        client_id: str,
        client_secret: str,
        *,
        scope: str | None = None,
        token_url: str | None = None,
        renew_before_seconds: float = 30.0,
        timeout_seconds: float = 5.0,
    ):
        self.issuer = issuer.rstrip("/")
        self.client_id = client_id
        self._secret = client_secret
        self.scope = scope
        self.renew_before_seconds = renew_before_seconds
        self.timeout_seconds = timeout_seconds
        self._lock = threading.Lock()
        self._token_endpoint: str | None = token_url
        self._token: str | None = None
        self._renew_at = 0.0

    def __call__(self) -> str:
        """A current access token; :class:`TokenUnavailable` when none can be had."""
        with self._lock:
            if self._token is None or time.monotonic() >= self._renew_at:
                self._fetch()
            assert self._token is not None
            return self._token

    def forget(self) -> None:
        """Drop the cached token (the API refused it): the next call fetches a new one."""
        with self._lock:
            self._token = None

    def _fetch(self) -> None:
        # The grant is one form POST, done with httpx here: authlib's httpx client integration
        # (1.9) is deprecated in favour of an "httpx2" package henvis does not use, and warns.
        # client_secret_post: Keycloak and Entra ID both take it, and it needs no form-encoding
        # of the id and secret inside a Basic header (RFC 6749 §2.3.1).
        form = {"grant_type": "client_credentials", "client_id": self.client_id, "client_secret": self._secret}
        if self.scope:
            form["scope"] = self.scope
        try:
            with httpx.Client(timeout=self.timeout_seconds) as http:
                if self._token_endpoint is None:
                    discovery = http.get(f"{self.issuer}/.well-known/openid-configuration")
                    discovery.raise_for_status()
                    self._token_endpoint = str(discovery.json()["token_endpoint"])
                answer = http.post(self._token_endpoint, data=form)
                answer.raise_for_status()
                body = answer.json()
            token, lifetime = str(body["access_token"]), float(body.get("expires_in", 60))
        except (httpx.HTTPError, ValueError, KeyError, TypeError) as exc:
            status = exc.response.status_code if isinstance(exc, httpx.HTTPStatusError) else None
            log.warning("access_token_unavailable", client=self.client_id, status=status, error_type=type(exc).__name__)
            raise TokenUnavailable(f"no access token for client {self.client_id}") from None
        self._token = token
        self._renew_at = time.monotonic() + max(lifetime - self.renew_before_seconds, lifetime / 2)


class ProviderAuth(httpx.Auth):
    """httpx authentication with a :class:`ClientCredentials` token: on every request, and once
    more with a fresh token when the API answers 401 (the cached one was revoked or its
    signing key retired).  :class:`TokenUnavailable` comes out of the request when the
    provider gives no token."""

    def __init__(self, credentials: ClientCredentials):
        self.credentials = credentials

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers["Authorization"] = f"Bearer {self.credentials()}"
        response = yield request
        if response.status_code == 401:
            self.credentials.forget()
            request.headers["Authorization"] = f"Bearer {self.credentials()}"
            yield request
