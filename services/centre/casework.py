"""What a centre's case system (JSON API) and a caseworker (web page) do with a referral.

Both read a referral the same way (logged in the access log) and record outcomes the same
way (counted in the metrics and logged), so the two entrances cannot drift apart.
"""

from __future__ import annotations

import uuid
from datetime import datetime

import structlog
from sqlalchemy.engine import Engine

from henvis.services.centre import domain_inbox
from henvis.services.centre.domain import Sealer
from henvis.services.centre.domain_outcomes import Recorded
from henvis.services.centre.metrics import OUTCOMES_RECORDED
from henvis.services.centre.store_access_log import log_access
from henvis.services.centre.store_outcomes import record_outcome
from henvis.services.centre.store_referrals import get_referral

# Named as before this module existed, so the log lines (their "logger" field) stay the same.
log = structlog.get_logger("henvis.centre.api")


def read_referral(engine: Engine, centre: str, referral_id: str, *, actor: str, actor_kind: str) -> dict:
    """One referral of ``centre`` with its contact details; the look goes in the access log.

    Raises ``store_referrals.NotFound`` when it is not this centre's.
    """
    shown = get_referral(engine, centre, referral_id)
    log_access(
        engine,
        actor=actor,
        actor_kind=actor_kind,
        centre=centre,
        referral_id=referral_id,
        action=domain_inbox.access_action(shown),
    )
    return shown


def record_and_count(
    engine: Engine,
    seal: Sealer | None,
    *,
    centre: str,
    referral_id: str,
    outcome: str,
    actor: str,
    actor_kind: str,
    occurred_at: datetime | None = None,
    event_id: uuid.UUID | None = None,
) -> Recorded:
    """Record an outcome (``store_outcomes.record_outcome``), and count and log it when it is new."""
    recorded = record_outcome(
        engine,
        centre=centre,
        referral_id=referral_id,
        outcome=outcome,
        actor=actor,
        actor_kind=actor_kind,
        occurred_at=occurred_at,
        event_id=event_id,
        seal=seal,
    )
    if recorded.created:
        OUTCOMES_RECORDED.labels(centre, recorded.outcome).inc()
        log.info("outcome_recorded", referral_id=recorded.referral_id, centre=centre, outcome=recorded.outcome)
    return recorded
