"""The JSON API for centres' case systems and auditors.

Roles: ``centre:<slug>`` reads and records its own centre's referrals; ``auditor`` reads
the access log. A referral of another centre answers 404 exactly like a missing one.
"""

from __future__ import annotations

import csv
import io
import uuid
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query
from fastapi.responses import JSONResponse, Response
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from henvis.http import require_json
from henvis.schemas.events import Outcome
from henvis.services.centre import casework, domain, store_access_log, store_referrals
from henvis.services.centre.deps import AuditorDep, CentreClientDep, ClientCentreDep, EngineDep, StateDep
from henvis.services.centre.domain_outcomes import EventIdConflict
from henvis.services.centre.key_store import KeyStoreUnavailable
from henvis.services.centre.store_referrals import NotFound

NOT_FOUND = "No such referral."

ACCESS_LOG_FIELDS = ["at", "actor", "actor_kind", "centre", "referral_id", "action"]

# The route functions have no docstrings: FastAPI would publish one as the operation's
# description in the OpenAPI document; ``summary=`` says what each does.
router = APIRouter()


class OutcomeRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    outcome: Outcome = Field(description="What happened; see the state machine in the caseworker guide.")
    occurred_at: AwareDatetime | None = Field(
        default=None, description="When it happened (default now); not in the future, not before the charge date."
    )
    event_id: uuid.UUID | None = Field(default=None, description="Idempotency key: the same id again answers 200.")


def _error(status: int, detail: str, field: str | None = None, kind: str | None = None) -> JSONResponse:
    content: dict = {"detail": detail}
    if field:
        content["errors"] = [{"field": field, "message": detail, "type": kind or "invalid"}]
    return JSONResponse(status_code=status, content=content)


def _key_store_unavailable() -> JSONResponse:
    """503: the consent service's key store did not answer; nothing was shown or recorded."""
    return JSONResponse(
        status_code=503,
        headers={"Retry-After": "5"},
        content={"detail": "The key store is unavailable, so the referral cannot be opened now. Please retry."},
    )


@router.get("/v1/referrals", tags=["referrals"], summary="List this centre's referrals, most urgent deadline first")
def list_referrals(
    centre: ClientCentreDep,
    engine: EngineDep,
    status: Annotated[Literal["open", "overdue", "closed", "withdrawn", "all"], Query()] = "open",
) -> dict:
    return {"referrals": store_referrals.list_referrals(engine, centre, status) if centre else []}


@router.get("/v1/referrals/{referral_id}", tags=["referrals"], summary="One referral with contact details")
def get_referral(referral_id: uuid.UUID, client: CentreClientDep, centre: ClientCentreDep, state: StateDep):
    if centre is None:
        return _error(404, NOT_FOUND)
    try:
        return casework.read_referral(
            state.engine, state.keys, centre, str(referral_id), actor=client.name, actor_kind="client"
        )
    except NotFound:
        return _error(404, NOT_FOUND)
    except KeyStoreUnavailable:
        return _key_store_unavailable()


@router.post(
    "/v1/referrals/{referral_id}/outcomes",
    tags=["referrals"],
    summary="Record an outcome (201 new, 200 repeat, 409 not allowed now)",
    dependencies=[Depends(require_json)],
    status_code=201,
)
def post_outcome(
    referral_id: uuid.UUID, body: OutcomeRequest, client: CentreClientDep, centre: ClientCentreDep, state: StateDep
):
    if centre is None:
        return _error(404, NOT_FOUND)
    try:
        recorded = casework.record_and_count(
            state.engine,
            state.keys,
            centre=centre,
            referral_id=str(referral_id),
            outcome=body.outcome.value,
            actor=client.name,
            actor_kind="client",
            occurred_at=body.occurred_at,
            event_id=body.event_id,
        )
    except NotFound:
        return _error(404, NOT_FOUND)
    except domain.IllegalTransition as exc:
        return _error(409, str(exc), "outcome", "illegal_transition")
    except EventIdConflict:
        return _error(409, "This event_id was already used for a different outcome.", "event_id", "event_id_reused")
    except domain.InvalidOccurredAt as exc:
        return _error(422, f"The outcome was not accepted: {exc}.", "occurred_at", "occurred_at_out_of_range")
    except KeyStoreUnavailable:
        return _key_store_unavailable()
    return JSONResponse(status_code=201 if recorded.created else 200, content=recorded.as_json())


@router.get("/v1/access-log", tags=["audit"], summary="Who looked at or changed which referral (JSON or CSV)")
def get_access_log(
    _client: AuditorDep,
    engine: EngineDep,
    format: Annotated[Literal["json", "csv"], Query()] = "json",
    referral_id: Annotated[uuid.UUID | None, Query()] = None,
):
    rows = store_access_log.access_log_rows(engine, str(referral_id) if referral_id else None)
    if format == "json":
        return {"entries": rows}
    return _csv_download(rows)


def _csv_download(rows: list[dict]) -> Response:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=ACCESS_LOG_FIELDS)
    writer.writeheader()
    writer.writerows(rows)
    return Response(
        content=buffer.getvalue(),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": 'attachment; filename="henvis-centre-access-log.csv"'},
    )
