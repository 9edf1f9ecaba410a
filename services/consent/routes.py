"""The police endpoints: ``POST /v1/decisions`` and ``POST /v1/withdrawals``.

Order of checks, so a client learns the most basic problem first: credential (401/403),
content type (415), body size (413, enforced while reading), JSON and schema (422),
registry rules (422), idempotency (200/409), then the durable write (202, or 503 when the
database is unavailable: never a 2xx for something that was not stored).

The route functions carry no docstring because FastAPI would publish it as the operation's
description in the checked-in OpenAPI document; their ``summary`` says what they do.
"""

from __future__ import annotations

import structlog
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from sqlalchemy import Engine
from starlette.concurrency import run_in_threadpool

from henvis.auth import ApiClient
from henvis.schemas.errors import describe, safe_errors
from henvis.schemas.events import ConsentWithdrawn
from henvis.services.consent import domain, refusals, store
from henvis.services.consent.deps import EngineDep, JsonBodyDep, PoliceClientDep, ProtectionDep
from henvis.services.consent.domain import PoliceEvent, Verdict
from henvis.services.consent.domain_keys import DataProtection, WithdrawnKeys
from henvis.services.consent.metrics import DECISION_LABEL, DECISIONS_ACCEPTED
from henvis.services.consent.openapi import DECISION_BODY, WITHDRAWAL_BODY, Accepted, request_body, responses
from henvis.services.consent.refusals import RejectReason

log = structlog.get_logger("henvis.consent.api")

router = APIRouter()

_STATUS_OF_VERDICT = {Verdict.NEW: 202, Verdict.REPLAY: 200}


@router.post(
    "/v1/decisions",
    tags=["police"],
    summary="Report a consent decision (given or declined)",
    status_code=202,
    response_model=Accepted,
    responses=responses("Accepted: stored durably and queued for the centre."),
    openapi_extra=request_body("ConsentDecision"),
)
async def post_decision(request: Request, client: PoliceClientDep, _json: JsonBodyDep) -> JSONResponse:
    # The engine, registry and keys are read from app.state here rather than resolved as three
    # more dependencies on every decision (bench/README.md, issue 18 profile).
    state = request.app.state
    body = await request.body()
    try:
        event = DECISION_BODY.validate_json(body)
    except ValidationError as exc:
        return _invalid(request, exc)
    errors = domain.registry_errors(event, state.registry)
    if errors:
        return _refuse(request, 422, errors, RejectReason.UNKNOWN_CENTRE)
    return await _accept(request, state.engine, state.protection, event, client)


@router.post(
    "/v1/withdrawals",
    tags=["police"],
    summary="Withdraw a consent (by case_ref or referral_id)",
    status_code=202,
    response_model=Accepted,
    responses=responses("Accepted: the withdrawal is stored durably and on its way to the centre."),
    openapi_extra=request_body("ConsentWithdrawn"),
)
async def post_withdrawal(
    request: Request, client: PoliceClientDep, _json: JsonBodyDep, engine: EngineDep, protection: ProtectionDep
) -> JSONResponse:
    body = await request.body()
    try:
        withdrawal = WITHDRAWAL_BODY.validate_json(body)
    except ValidationError as exc:
        return _invalid(request, exc)
    try:
        known = await _known_referral(engine, withdrawal, protection)
    except store.DATABASE_UNAVAILABLE as exc:
        return _unavailable(request, exc)
    withdrawn, errors = domain.resolve_withdrawal(withdrawal, known, protection.pseudonyms)
    if withdrawn is None:  # exactly when there are errors
        return _refuse(request, 422, errors, RejectReason.UNKNOWN_REFERRAL)
    return await _accept(request, engine, protection, withdrawal, client, withdrawn)


async def _known_referral(
    engine: Engine, withdrawal: ConsentWithdrawn, protection: DataProtection
) -> domain.KnownReferral | None:
    """What the store knows of the referral the withdrawal names; None when it names none."""
    if withdrawal.referral_id is None:
        return None
    return await run_in_threadpool(store.known_referral, engine, withdrawal.referral_id, protection.pseudonyms)


async def _accept(
    request: Request,
    engine: Engine,
    protection: DataProtection,
    submitted: PoliceEvent,
    client: ApiClient,
    withdrawn: WithdrawnKeys | None = None,
) -> JSONResponse:
    """Store the event durably: 202 when new, 200 for a replay, 409 for a conflict, 503 when down."""
    try:
        acceptance = await run_in_threadpool(store.accept, engine, submitted, client.name, protection, withdrawn)
    except store.DATABASE_UNAVAILABLE as exc:
        return _unavailable(request, exc)
    if acceptance.verdict is Verdict.CONFLICT:
        return _refuse(request, 409, refusals.event_id_conflict(), RejectReason.CONFLICT)
    if acceptance.verdict is Verdict.NEW:
        DECISIONS_ACCEPTED.labels(DECISION_LABEL[submitted.event_type]).inc()
    return JSONResponse(status_code=_STATUS_OF_VERDICT[acceptance.verdict], content=domain.accepted_result(submitted))


def _invalid(request: Request, exc: ValidationError) -> JSONResponse:
    """422 naming every failing field of the body, without its value."""
    return _refuse(request, 422, refusals.name_discriminator(safe_errors(exc)), RejectReason.INVALID)


def _refuse(request: Request, status: int, errors: list[dict[str, str]], reason: RejectReason) -> JSONResponse:
    """The error answer, with the reason noted for ``middleware.CountRejections``."""
    request.state.reject_reason = reason
    return JSONResponse(status_code=status, content={"detail": describe(errors), "errors": errors})


def _unavailable(request: Request, exc: Exception) -> JSONResponse:
    """503 with Retry-After: the database could not be reached and nothing was stored."""
    log.warning("database_unavailable", error_type=type(exc).__name__)
    request.state.reject_reason = RejectReason.UNAVAILABLE
    return JSONResponse(
        status_code=503,
        headers={"Retry-After": "5"},
        content={"detail": "The consent database is unavailable; nothing was stored. Please retry.", "errors": []},
    )
