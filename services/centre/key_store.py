"""The consent service's key store, as the centre uses it: a referral's data key (to open its
contact details), handing a returned referral to manual handling, destroying a key when the
inbox's retention ends.

Each centre asks with its own credential (``centre:<slug>``), so the key store releases a
key only to the centre the referral was routed to: a static token, or with an identity
provider an access token its client gets by the client-credentials grant.  A key that is not the centre's, was
never made, or was destroyed all come back as None: the inbox shows them erased.  Anything
else (the store unreachable, a 5xx) raises :class:`KeyStoreUnavailable`: try again later,
never "erased".
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from typing import Protocol

import httpx
import structlog

from henvis.client_credentials import ClientCredentials, TokenUnavailable

log = structlog.get_logger("henvis.centre.keys")


class KeyStoreUnavailable(RuntimeError):
    """The key store did not answer (or answered 5xx): nothing is known about the key."""


class DataKeys(Protocol):
    """What the inbox needs of the key store (the HTTP client below; tests use one in memory)."""

    def fetch(self, centre: str, referral_id: str) -> bytes | None: ...

    def hand_over(self, centre: str, referral_id: str) -> bool: ...

    def destroy(self, centre: str, referral_id: str) -> bool: ...


class KeyStoreClient:
    """:class:`DataKeys` over the consent service's ``/v1/data-keys`` endpoints."""

    def __init__(self, url: str, tokens: Mapping[str, str | ClientCredentials], timeout: float = 5.0, transport=None):
        self._tokens = dict(tokens)
        self._http = httpx.Client(base_url=url.rstrip("/"), timeout=timeout, transport=transport)

    def fetch(self, centre: str, referral_id: str) -> bytes | None:
        response = self._call("GET", centre, f"/v1/data-keys/{referral_id}")
        if response.status_code == 404:
            return None
        try:
            return base64.b64decode(response.json()["data_key"], validate=True)
        except (ValueError, KeyError, TypeError, binascii.Error):
            raise KeyStoreUnavailable("the key store answered without a key") from None

    def hand_over(self, centre: str, referral_id: str) -> bool:
        return self._call("POST", centre, f"/v1/data-keys/{referral_id}/return").status_code == 204

    def destroy(self, centre: str, referral_id: str) -> bool:
        return self._call("DELETE", centre, f"/v1/data-keys/{referral_id}").status_code == 204

    def _call(self, method: str, centre: str, path: str) -> httpx.Response:
        """The answer (2xx or 404); :class:`KeyStoreUnavailable` for anything else."""
        credential = self._tokens.get(centre)
        if credential is None:
            raise KeyStoreUnavailable(f"no key-store credential is configured for centre {centre}")
        try:
            token = credential if isinstance(credential, str) else credential()
            response = self._http.request(method, path, headers={"Authorization": f"Bearer {token}"})
        except TokenUnavailable as exc:
            raise KeyStoreUnavailable(str(exc)) from None
        except httpx.HTTPError as exc:
            log.warning("key_store_unreachable", centre=centre, error_type=type(exc).__name__)
            raise KeyStoreUnavailable(type(exc).__name__) from None
        if response.status_code == 404 or response.is_success:
            return response
        if response.status_code == 401 and isinstance(credential, ClientCredentials):
            credential.forget()  # revoked or the provider's keys rotated: the next call gets a new one
        log.warning("key_store_refused", centre=centre, status=response.status_code)
        raise KeyStoreUnavailable(f"the key store answered {response.status_code}")

    def close(self) -> None:
        self._http.close()
