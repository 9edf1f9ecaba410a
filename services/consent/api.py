"""The police-facing HTTP API: ``POST /v1/decisions`` and ``POST /v1/withdrawals``.

Order of checks, so a client learns the most basic problem first: credential (401/403),
content type (415), body size (413, enforced while reading), JSON and schema (422),
registry rules (422), idempotency (200/409), then the durable write (202, or 503 when the
database is unavailable: never a 2xx for something that was not stored).
"""

from __future__ import annotations

import math
from typing import Any

import structlog
from fastapi import Depends, FastAPI, Request
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field, TypeAdapter, ValidationError
from sqlalchemy import Engine
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from starlette.concurrency import run_in_threadpool

from henvis import __version__
from henvis.auth import ApiClient, ClientRegistry
from henvis.db import make_engine
from henvis.http import bearer_auth, create_app, require_json
from henvis.registry import Registry, load_registry
from henvis.schemas.errors import describe, safe_errors
from henvis.schemas.events import ConsentDecision, ConsentWithdrawn, Event
from henvis.services.consent import domain, store
from henvis.services.consent.metrics import (
    DECISION_LABEL,
    DECISIONS_ACCEPTED,
    OUTBOX_BACKLOG,
    OUTBOX_OLDEST_AGE,
    REJECTED,
)
from henvis.services.consent.settings import ConsentSettings

log = structlog.get_logger("henvis.consent.api")

POLICE_ROLE = "police"
_SCHEMA_REF = "#/components/schemas/{model}"
_DECISION = TypeAdapter(ConsentDecision)
_WITHDRAWAL = TypeAdapter(ConsentWithdrawn)
# Failures that mean "the database cannot be reached right now", as opposed to a bug.
_UNAVAILABLE = (OperationalError, InterfaceError, PoolTimeoutError, ConnectionError)

DESCRIPTION = """\
The only door for police case systems into henvis.

* `POST /v1/decisions` — one `consent.given` or `consent.declined` event each time the
  offer of counselling is made.
* `POST /v1/withdrawals` — one `consent.withdrawn` event when a person changes their mind,
  naming the `case_ref` or the `referral_id` returned when the consent was accepted.

Every request needs a bearer token of a client with the `police` role. Requests are
idempotent on `event_id`: send the same event again (e.g. after a timeout) and you get
200 with the original result; a different event under a known `event_id` is refused
with 409. A 2xx means the event is stored durably and will reach the centre.
Errors never repeat the values you sent.
"""


class Accepted(BaseModel):
    event_id: str = Field(description="The event's id (your idempotency key).")
    status: str = Field(description="Always `accepted`.", examples=["accepted"])
    referral_id: str | None = Field(
        default=None, description="For a consent.given: the referral id a withdrawal may name."
    )


class ErrorItem(BaseModel):
    field: str = Field(description="Dotted path of the failing field, e.g. `person.phone`.")
    message: str = Field(description="What is wrong; never the submitted value.")
    type: str = Field(description="Machine-readable error code.")


class ErrorBody(BaseModel):
    detail: str = Field(description="A human sentence.")
    errors: list[ErrorItem] = Field(default_factory=list, description="One entry per failing field.")


def _responses(accepted_description: str) -> dict[int | str, dict[str, Any]]:
    return {
        200: {"model": Accepted, "description": "Replay: this event was accepted before; the original result."},
        202: {"model": Accepted, "description": accepted_description},
        401: {"model": ErrorBody, "description": "Missing or unknown bearer token."},
        403: {"model": ErrorBody, "description": "The token's role is not `police`."},
        409: {"model": ErrorBody, "description": "Another event was already accepted under this event_id."},
        413: {"model": ErrorBody, "description": "The body is larger than the limit."},
        415: {"model": ErrorBody, "description": "The body is not `application/json`."},
        422: {"model": ErrorBody, "description": "Invalid event: the failing fields are listed."},
        503: {"model": ErrorBody, "description": "The database is unavailable; nothing was stored. Retry."},
    }


def _request_body(component: str) -> dict:
    return {
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": {"$ref": _SCHEMA_REF.format(model=component)}}},
        }
    }


def _error(status: int, errors: list[dict[str, str]], request: Request, reason: domain.RejectReason) -> JSONResponse:
    request.state.reject_reason = reason
    return JSONResponse(status_code=status, content={"detail": describe(errors), "errors": errors})


def _unavailable() -> JSONResponse:
    return JSONResponse(
        status_code=503,
        headers={"Retry-After": "5"},
        content={"detail": "The consent database is unavailable; nothing was stored. Please retry.", "errors": []},
    )


class CountRejections:
    """Counts refused POSTs by reason (the handler's ``request.state.reject_reason``, else the
    status). A plain ASGI middleware: ``@app.middleware("http")`` costs a task and a memory
    stream per request (bench/README.md, profiling)."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        state = scope.setdefault("state", {})  # request.state below us writes here

        async def send_counting(message) -> None:
            if message["type"] == "http.response.start" and message["status"] >= 400:
                noted = state.get("reject_reason") if isinstance(state, dict) else getattr(state, "reject_reason", None)
                reason = noted or domain.REASON_BY_STATUS.get(message["status"])
                if reason is not None:
                    REJECTED.labels(reason.value).inc()
            await send(message)

        await self.app(scope, receive, send_counting)


def create_consent_app(
    settings: ConsentSettings | None = None,
    *,
    engine: Engine | None = None,
    registry: Registry | None = None,
    clients: ClientRegistry | None = None,
) -> FastAPI:
    """The consent API over ``engine`` (already migrated; ``henvis consent serve`` does that)."""
    settings = settings or ConsentSettings()
    engine = engine or make_engine(settings.database_url)
    registry = registry or load_registry(settings.registry_path)
    clients = clients or ClientRegistry.from_settings(settings)
    police_only = bearer_auth(clients, {POLICE_ROLE})

    app = create_app(
        service="consent",
        title="henvis consent API",
        version=__version__,
        description=DESCRIPTION,
        ready=lambda: store.ping(engine),
        max_body_bytes=settings.max_body_bytes,
    )
    app.state.engine = engine

    app.add_middleware(CountRejections)

    async def _accept(request: Request, submitted: Event, published: Event, client: ApiClient) -> JSONResponse:
        try:
            outcome = await run_in_threadpool(store.accept, engine, submitted, published, client.name)
        except _UNAVAILABLE as exc:
            log.warning("database_unavailable", error_type=type(exc).__name__)
            request.state.reject_reason = domain.RejectReason.UNAVAILABLE
            return _unavailable()
        if outcome.verdict is domain.Verdict.CONFLICT:
            return _error(
                409,
                [domain.error("event_id", "was already used for a different event", "event_id_conflict")],
                request,
                domain.RejectReason.CONFLICT,
            )
        status = 202 if outcome.verdict is domain.Verdict.NEW else 200
        if status == 202:
            DECISIONS_ACCEPTED.labels(DECISION_LABEL[submitted.event_type]).inc()
        return JSONResponse(status_code=status, content=domain.accepted_result(submitted))

    async def _parse(request: Request, adapter: TypeAdapter):
        body = await request.body()
        try:
            return adapter.validate_json(body), None
        except ValidationError as exc:
            return None, _error(422, domain.name_discriminator(safe_errors(exc)), request, domain.RejectReason.INVALID)

    @app.post(
        "/v1/decisions",
        tags=["police"],
        summary="Report a consent decision (given or declined)",
        status_code=202,
        response_model=Accepted,
        responses=_responses("Accepted: stored durably and queued for the centre."),
        openapi_extra=_request_body("ConsentDecision"),
    )
    async def post_decision(
        request: Request,
        client: ApiClient = Depends(police_only),
        _json: None = Depends(require_json),
    ) -> JSONResponse:
        event, failure = await _parse(request, _DECISION)
        if failure is not None:
            return failure
        errors = domain.registry_errors(event, registry)
        if errors:
            return _error(422, errors, request, domain.RejectReason.UNKNOWN_CENTRE)
        return await _accept(request, event, event, client)

    @app.post(
        "/v1/withdrawals",
        tags=["police"],
        summary="Withdraw a consent (by case_ref or referral_id)",
        status_code=202,
        response_model=Accepted,
        responses=_responses("Accepted: the withdrawal is stored durably and on its way to the centre."),
        openapi_extra=_request_body("ConsentWithdrawn"),
    )
    async def post_withdrawal(
        request: Request,
        client: ApiClient = Depends(police_only),
        _json: None = Depends(require_json),
    ) -> JSONResponse:
        withdrawal, failure = await _parse(request, _WITHDRAWAL)
        if failure is not None:
            return failure
        known = None
        if withdrawal.referral_id is not None:
            try:
                known = await run_in_threadpool(store.known_referral, engine, withdrawal.referral_id)
            except _UNAVAILABLE as exc:
                log.warning("database_unavailable", error_type=type(exc).__name__)
                request.state.reject_reason = domain.RejectReason.UNAVAILABLE
                return _unavailable()
        published, errors = domain.resolve_withdrawal(withdrawal, known)
        if errors:
            return _error(422, errors, request, domain.RejectReason.UNKNOWN_REFERRAL)
        return await _accept(request, withdrawal, published, client)

    def _backlog_value(attribute: str) -> float:
        try:
            return float(getattr(store.backlog(engine), attribute))
        except Exception:  # noqa: BLE001 - a scrape must not fail because the database is down
            return math.nan

    OUTBOX_BACKLOG.set_function(lambda: _backlog_value("unsent"))
    OUTBOX_OLDEST_AGE.set_function(lambda: _backlog_value("oldest_age_seconds"))

    app.openapi = lambda: _openapi(app)
    return app


def _openapi(app: FastAPI) -> dict:
    """FastAPI's document plus the event models the endpoints read by hand."""
    if app.openapi_schema:
        return app.openapi_schema
    schema = get_openapi(
        title=app.title, version=app.version, description=app.description, routes=app.routes, tags=[
            {"name": "police", "description": "Endpoints for police case systems (role `police`)."},
            {"name": "operations", "description": "Health and readiness probes for operators."},
        ]
    )
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    for name, adapter in (("ConsentDecision", _DECISION), ("ConsentWithdrawn", _WITHDRAWAL)):
        model_schema = adapter.json_schema(ref_template=_SCHEMA_REF)
        components.update(model_schema.pop("$defs", {}))
        components[name] = model_schema
    schema["components"]["schemas"] = dict(sorted(components.items()))
    app.openapi_schema = schema
    return schema


def openapi_document(settings: ConsentSettings | None = None) -> dict:
    """The OpenAPI document without touching a database (for ``henvis consent openapi``)."""
    settings = settings or ConsentSettings(database_url="sqlite://")
    app = create_consent_app(settings, engine=make_engine("sqlite://"), clients=ClientRegistry([]))
    return app.openapi()
