"""SQL adapter recording an outcome: load the referral, ask :mod:`domain_outcomes`, write in one transaction.

The state change, the outcome's history row, its outbox rows and the access-log line are
written together or not at all.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError

from henvis.services.centre import domain_outcomes
from henvis.services.centre.database import utcnow
from henvis.services.centre.domain_outcomes import EarlierOutcome, Recorded, Recording, RecordOutcome
from henvis.services.centre.models import outcomes, referrals
from henvis.services.centre.store_access_log import audit
from henvis.services.centre.store_outbox import enqueue_all
from henvis.services.centre.store_referrals import load_referral, task_version

#: Hands a returned referral's data key to manual handling: ``(centre, referral_id)``.
HandOver = Callable[[str, str], object]


def record_outcome(
    engine: Engine,
    *,
    centre: str,
    referral_id: str,
    outcome: str,
    actor: str,
    actor_kind: str,
    occurred_at: datetime | None = None,
    event_id: uuid.UUID | None = None,
    now: datetime | None = None,
    hand_over: HandOver | None = None,
    expected_version: int | None = None,
) -> Recorded:
    """Record an outcome: state change, outcome row, outbox row(s) and audit line in one transaction.

    Raises NotFound, EventIdConflict, domain.IllegalTransition or domain.InvalidOccurredAt.
    ``hand_over(centre, referral_id)`` gives a returned referral's data key to manual handling
    (the key store) before the transaction commits; if it raises, nothing is recorded.
    ``expected_version``: the FHIR Task version the request was made against (If-Match);
    a change to a referral at another version raises ``VersionConflict``.
    """
    now = now or utcnow()
    request = RecordOutcome(
        centre=centre,
        referral_id=referral_id,
        outcome=outcome,
        actor=actor,
        actor_kind=actor_kind,
        occurred_at=(occurred_at or now).astimezone(UTC),  # stored in UTC (SQLite keeps no zone)
        event_id=event_id or uuid.uuid4(),
    )
    try:
        return _record_once(engine, request, now, hand_over, expected_version)
    except IntegrityError:
        # A concurrent request with the same event_id won the race: answer as a repeat.
        return _record_once(engine, request, now, hand_over, expected_version)


def _record_once(
    engine: Engine, request: RecordOutcome, now: datetime, hand_over: HandOver | None, expected_version: int | None
) -> Recorded:
    with engine.begin() as conn:
        referral = load_referral(conn, request.centre, request.referral_id, for_update=True)
        recording = domain_outcomes.record_outcome(
            referral,
            request,
            _earlier(conn, request.event_id),
            _state_event_id(conn, request.referral_id, referral.state),
            now,
        )
        if expected_version is not None:
            domain_outcomes.check_version(recording, task_version(conn, request.referral_id), expected_version)
        if recording.hands_over_key and hand_over is not None:
            # The key store first: a referral is never returned while its key stays with us.
            hand_over(request.centre, request.referral_id)
        if recording.change is not None:
            _save(conn, request, recording, now)
    return recording.recorded


def _earlier(conn: Connection, event_id: uuid.UUID) -> EarlierOutcome | None:
    row = conn.execute(
        sa.select(outcomes.c.event_id, outcomes.c.referral_id, outcomes.c.outcome).where(
            outcomes.c.event_id == str(event_id)
        )
    ).first()
    return EarlierOutcome(row.event_id, row.referral_id, row.outcome) if row else None


def _state_event_id(conn: Connection, referral_id: str, state: str) -> str | None:
    """The latest event recording the outcome the referral stands at (what a repeat answers with)."""
    return conn.execute(
        sa.select(outcomes.c.event_id)
        .where(outcomes.c.referral_id == referral_id, outcomes.c.outcome == state)
        .order_by(outcomes.c.recorded_at.desc())
    ).scalar()


def _save(conn: Connection, request: RecordOutcome, recording: Recording, now: datetime) -> None:
    """Write a recording that changes the referral (``change`` set, never a repeat)."""
    change, audit_action = recording.change, recording.audit_action
    # Called only with a change, and domain_outcomes.record_outcome names the audit action
    # of every recording it gives a change.
    assert change is not None and audit_action is not None
    conn.execute(
        outcomes.insert().values(
            event_id=str(request.event_id),
            referral_id=request.referral_id,
            centre=request.centre,
            outcome=request.outcome,
            occurred_at=request.occurred_at,
            recorded_at=now,
            recorded_by=request.actor,
        )
    )
    conn.execute(
        referrals.update()
        .where(referrals.c.referral_id == request.referral_id)
        .values(state=change.state, last_outcome=change.last_outcome, ended_at=change.ended_at)
    )
    enqueue_all(conn, recording.outgoing, now)
    audit(
        conn,
        actor=request.actor,
        actor_kind=request.actor_kind,
        centre=request.centre,
        referral_id=request.referral_id,
        action=audit_action,
        now=now,
    )
