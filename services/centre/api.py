"""``henvis centre serve``: the JSON API for centres' case systems and auditors, plus the web page.

Roles: ``centre:<slug>`` reads and records its own centre's referrals; ``auditor`` reads
the access log. A referral of another centre answers 404 exactly like a missing one.
"""

from __future__ import annotations

import csv
import io
import uuid
from dataclasses import dataclass
from typing import Literal

import sqlalchemy as sa
import structlog
from fastapi import Depends, Query
from fastapi.responses import JSONResponse, Response
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field
from sqlalchemy.engine import Engine

from henvis.auth import ApiClient, ClientRegistry
from henvis.db import migrate
from henvis.http import bearer_auth, create_app, require_json
from henvis.registry import Registry, load_registry
from henvis.schemas.events import Outcome
from henvis.services.centre import domain, store
from henvis.services.centre.metrics import OUTCOMES_RECORDED, watch_inbox
from henvis.services.centre.settings import CentreSettings

log = structlog.get_logger("henvis.centre.api")

NOT_FOUND = "No such referral."


class OutcomeRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    outcome: Outcome = Field(description="What happened; see the state machine in the caseworker guide.")
    occurred_at: AwareDatetime | None = Field(
        default=None, description="When it happened (default now); not in the future, not before the charge date."
    )
    event_id: uuid.UUID | None = Field(default=None, description="Idempotency key: the same id again answers 200.")


@dataclass
class CentreContext:
    settings: CentreSettings
    registry: Registry
    centres: list[str]
    engine: Engine
    clients: ClientRegistry
    seal: object = None  # encrypts for the manual-handling role; None without a key


def _error(status: int, detail: str, field: str | None = None, kind: str | None = None) -> JSONResponse:
    content: dict = {"detail": detail}
    if field:
        content["errors"] = [{"field": field, "message": detail, "type": kind or "invalid"}]
    return JSONResponse(status_code=status, content=content)


def record_and_count(ctx: CentreContext, **kwargs) -> store.Recorded:
    """Record an outcome and count it in the metrics when it is new (shared by API and web)."""
    recorded = store.record_outcome(ctx.engine, seal=ctx.seal, **kwargs)
    if recorded.created:
        OUTCOMES_RECORDED.labels(kwargs["centre"], recorded.outcome).inc()
        log.info("outcome_recorded", referral_id=recorded.referral_id, centre=kwargs["centre"], outcome=recorded.outcome)
    return recorded


def _sealer(settings: CentreSettings):
    if not settings.manual_public_key:
        return None
    # The router's sealing (NaCl sealed box), so the manual desk opens both with one key.
    from henvis.sealing import Sealer

    return Sealer(settings.manual_public_key)


def build_app(settings: CentreSettings | None = None, *, local_only: bool = False):
    """The app; ``local_only`` (serving on loopback) allows a generated session secret."""
    settings = settings or CentreSettings()
    registry = load_registry(settings.registry_path)
    centres = settings.centre_slugs(registry)
    migrate(settings.database_url, "centre")
    engine = store.make_centre_engine(settings.database_url)
    ctx = CentreContext(settings, registry, centres, engine, ClientRegistry.from_settings(settings), _sealer(settings))
    watch_inbox(engine, centres)

    def ready() -> bool:
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
        return True

    app = create_app(
        service="centre",
        title="henvis centre inbox",
        version="1",
        description="Referrals for the rusmiddelcentre: list, read, record outcomes; access log for auditors.",
        ready=ready,
    )
    app.state.centre = ctx

    centre_client = bearer_auth(ctx.clients, lambda role: role.startswith("centre:"))
    auditor_client = bearer_auth(ctx.clients, {"auditor"})

    def client_centre(client: ApiClient) -> str | None:
        """The client's centre, if this deployment serves it (otherwise it sees nothing)."""
        return client.centre if client.centre in ctx.centres else None

    @app.get("/v1/referrals", tags=["referrals"], summary="List this centre's referrals, most urgent deadline first")
    def list_referrals(
        status: Literal["open", "overdue", "closed", "withdrawn", "all"] = Query("open"),
        client: ApiClient = Depends(centre_client),
    ) -> dict:
        centre = client_centre(client)
        return {"referrals": store.list_referrals(engine, centre, status) if centre else []}

    @app.get("/v1/referrals/{referral_id}", tags=["referrals"], summary="One referral with contact details")
    def get_referral(referral_id: uuid.UUID, client: ApiClient = Depends(centre_client)):
        centre = client_centre(client)
        try:
            if centre is None:
                raise store.NotFound(str(referral_id))
            detail = store.get_referral(engine, centre, str(referral_id))
        except store.NotFound:
            return _error(404, NOT_FOUND)
        store.log_access(engine, actor=client.name, actor_kind="client", centre=centre, referral_id=str(referral_id),
                         action="view_contact_details" if detail["person"] else "view_referral")
        return detail

    @app.post(
        "/v1/referrals/{referral_id}/outcomes",
        tags=["referrals"],
        summary="Record an outcome (201 new, 200 repeat, 409 not allowed now)",
        dependencies=[Depends(require_json)],
        status_code=201,
    )
    def post_outcome(referral_id: uuid.UUID, body: OutcomeRequest, client: ApiClient = Depends(centre_client)):
        centre = client_centre(client)
        if centre is None:
            return _error(404, NOT_FOUND)
        try:
            recorded = record_and_count(
                ctx, centre=centre, referral_id=str(referral_id), outcome=body.outcome.value, actor=client.name,
                actor_kind="client", occurred_at=body.occurred_at, event_id=body.event_id,
            )
        except store.NotFound:
            return _error(404, NOT_FOUND)
        except domain.IllegalTransition as exc:
            return _error(409, str(exc), "outcome", "illegal_transition")
        except store.EventIdConflict:
            return _error(409, "This event_id was already used for a different outcome.", "event_id", "event_id_reused")
        except domain.InvalidOccurredAt as exc:
            return _error(422, f"The outcome was not accepted: {exc}.", "occurred_at", "occurred_at_out_of_range")
        return JSONResponse(status_code=201 if recorded.created else 200, content=recorded.as_json())

    @app.get("/v1/access-log", tags=["audit"], summary="Who looked at or changed which referral (JSON or CSV)")
    def get_access_log(
        format: Literal["json", "csv"] = Query("json"),
        referral_id: uuid.UUID | None = Query(None),
        _client: ApiClient = Depends(auditor_client),
    ):
        rows = store.access_log_rows(engine, str(referral_id) if referral_id else None)
        if format == "json":
            return {"entries": rows}
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=["at", "actor", "actor_kind", "centre", "referral_id", "action"])
        writer.writeheader()
        writer.writerows(rows)
        return Response(
            content=buffer.getvalue(),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": 'attachment; filename="henvis-centre-access-log.csv"'},
        )

    from henvis.services.centre.web import register_web

    register_web(app, ctx, local_only=local_only)
    return app
