"""The key store's endpoints: a referral's data key for its grantee, a centre handing a referral
to manual handling, a grantee destroying a key at the end of its retention, the access log.

A key a client may not have, a key that never existed and a destroyed key get the same 404,
so a centre learns nothing about another centre's referrals, nor whether one was withdrawn.
Every answer about a key is in the key access log (auditors read it here).
"""

from __future__ import annotations

import base64
import uuid
from typing import Annotated

import structlog
from fastapi import APIRouter, Query, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from henvis.services.consent import store, store_keys
from henvis.services.consent.deps import AuditorDep, CentreClientDep, EngineDep, KeyHolderDep, ProtectionDep
from henvis.shredding import UnknownKeyEncryptionKey

log = structlog.get_logger("henvis.consent.keys")

router = APIRouter()

NO_SUCH_KEY = "No such data key."


class DataKey(BaseModel):
    referral_id: str = Field(description="The referral the key opens (its `personal` blobs on every topic).")
    data_key: str = Field(description="The 32-byte data key, base64. Keep it in memory only, for as long as needed.")


def _no_such_key() -> JSONResponse:
    return JSONResponse(status_code=404, content={"detail": NO_SUCH_KEY})


def _unavailable(exc: Exception) -> JSONResponse:
    """503: the database is away, or the key is wrapped under a KEK this replica lacks."""
    log.warning("key_store_unavailable", error_type=type(exc).__name__)
    return JSONResponse(
        status_code=503, headers={"Retry-After": "5"}, content={"detail": "The key store is unavailable. Please retry."}
    )


_KEY_RESPONSES: dict[int | str, dict] = {
    401: {"description": "Missing or unknown bearer token, or an access token that fails a check."},
    403: {"description": "The token's role may not use this endpoint."},
    404: {"description": "No such data key for you: not yours, never made, or destroyed (one answer for all)."},
    503: {"description": "The key store is unavailable; retry."},
}


@router.get(
    "/v1/data-keys/{referral_id}",
    tags=["data keys"],
    summary="A referral's data key, for the centre it was routed to or the manual-handling role",
    response_model=DataKey,
    responses=_KEY_RESPONSES,
)
def get_data_key(referral_id: uuid.UUID, client: KeyHolderDep, engine: EngineDep, protection: ProtectionDep):
    try:
        data_key = store_keys.release(engine, referral_id, client, protection.keks)
    except (UnknownKeyEncryptionKey, *store.DATABASE_UNAVAILABLE) as exc:
        return _unavailable(exc)
    if data_key is None:
        return _no_such_key()
    return DataKey(referral_id=str(referral_id), data_key=base64.b64encode(data_key).decode("ascii"))


@router.post(
    "/v1/data-keys/{referral_id}/return",
    tags=["data keys"],
    summary="A centre returns its referral: the key goes to the manual-handling role only",
    status_code=204,
    responses=_KEY_RESPONSES,
)
def return_data_key(referral_id: uuid.UUID, client: CentreClientDep, engine: EngineDep):
    try:
        handed_over = store_keys.hand_to_manual_handling(engine, referral_id, client)
    except store.DATABASE_UNAVAILABLE as exc:
        return _unavailable(exc)
    return Response(status_code=204) if handed_over else _no_such_key()


@router.delete(
    "/v1/data-keys/{referral_id}",
    tags=["data keys"],
    summary="Destroy a referral's data key (its holder's retention has ended)",
    status_code=204,
    responses=_KEY_RESPONSES,
)
def delete_data_key(referral_id: uuid.UUID, client: KeyHolderDep, engine: EngineDep):
    try:
        destroyed = store_keys.destroy_for_holder(engine, referral_id, client)
    except store.DATABASE_UNAVAILABLE as exc:
        return _unavailable(exc)
    return Response(status_code=204) if destroyed else _no_such_key()


@router.get("/v1/key-access-log", tags=["audit"], summary="Every data key released, refused, handed over or destroyed")
def get_key_access_log(
    _client: AuditorDep, engine: EngineDep, referral_id: Annotated[uuid.UUID | None, Query()] = None
) -> dict:
    return {"entries": store_keys.access_log_rows(engine, str(referral_id) if referral_id else None)}
