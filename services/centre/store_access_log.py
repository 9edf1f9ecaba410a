"""SQL adapter of the access log: who looked at or changed which referral, never what they saw."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from henvis.services.centre.database import aware, utcnow
from henvis.services.centre.models import access_log


def audit(
    conn: Connection,
    *,
    actor: str,
    actor_kind: str,
    centre: str | None,
    referral_id: str | None,
    action: str,
    now: datetime,
) -> None:
    """Add a line to the access log, inside the transaction of the change it records."""
    conn.execute(
        access_log.insert().values(
            at=now, actor=actor, actor_kind=actor_kind, centre=centre, referral_id=referral_id, action=action
        )
    )


def log_access(
    engine: Engine,
    *,
    actor: str,
    actor_kind: str,
    centre: str | None,
    referral_id: str | None,
    action: str,
    now: datetime | None = None,
) -> None:
    """Add a line to the access log in a transaction of its own (a look, a login)."""
    with engine.begin() as conn:
        audit(
            conn,
            actor=actor,
            actor_kind=actor_kind,
            centre=centre,
            referral_id=referral_id,
            action=action,
            now=now or utcnow(),
        )


def access_log_rows(engine: Engine, referral_id: str | None = None, limit: int = 10_000) -> list[dict]:
    """The log's lines, oldest first (only ``referral_id``'s when given), for the auditors."""
    query = sa.select(access_log).order_by(access_log.c.id).limit(limit)
    if referral_id:
        query = query.where(access_log.c.referral_id == referral_id)
    with engine.connect() as conn:
        return [
            {
                "at": aware(r.at).isoformat(),
                "actor": r.actor,
                "actor_kind": r.actor_kind,
                "centre": r.centre,
                "referral_id": r.referral_id,
                "action": r.action,
            }
            for r in conn.execute(query)
        ]
