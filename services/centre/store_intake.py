"""SQL adapter of what the worker writes: referrals and withdrawals arriving, and the retention purge.

Each function is one transaction: load what the decision needs, ask :mod:`domain_intake`
(or :func:`domain.purge_due`), write what it decided.
"""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from henvis.schemas.events import ReferralIssued, ReferralOutcome, ReferralWithdrawn
from henvis.services.centre import domain, domain_intake, domain_outcomes
from henvis.services.centre.database import aware, utcnow
from henvis.services.centre.domain import SYSTEM_ACTOR
from henvis.services.centre.domain_inbox import Referral
from henvis.services.centre.domain_intake import Lifecycle, Placement
from henvis.services.centre.models import PERSONAL_COLUMNS, outcomes, referrals, withdrawal_tombstones
from henvis.services.centre.store_access_log import audit
from henvis.services.centre.store_outbox import enqueue_all


def ingest_issued(engine: Engine, event: ReferralIssued, topic_centre: str, now: datetime | None = None) -> str:
    """Put a referral in the inbox once.

    Returns ``stored``, ``duplicate``, ``stored_withdrawn`` (its withdrawal came first),
    ``rerouted`` (returned by another centre, now issued to this one) or ``misrouted``.
    """
    now = now or utcnow()
    referral_id = str(event.referral_id)
    with engine.begin() as conn:
        existing = _placement(conn, referral_id)
        tombstone = _tombstone(conn, referral_id)
        withdrawn_at = aware(tombstone.withdrawn_at) if tombstone else None
        arrival = domain_intake.receive_referral(event, topic_centre, existing, withdrawn_at, now)
        if arrival.lifecycle is not None:
            values = {**_referral_values(event, now), **_lifecycle_values(arrival.lifecycle)}
            if arrival.replaces_returned:
                conn.execute(referrals.update().where(referrals.c.referral_id == referral_id).values(**values))
            else:
                conn.execute(referrals.insert().values(**values))
        enqueue_all(conn, arrival.outgoing, now)
    return arrival.result


def ingest_withdrawn(engine: Engine, event: ReferralWithdrawn, now: datetime | None = None) -> str:
    """Erase the contact details at once, mark withdrawn, queue the acknowledgement; one transaction.

    Returns ``erased``, ``duplicate`` or ``tombstone`` (the referral has not arrived yet).
    """
    now = now or utcnow()
    referral_id = str(event.referral_id)
    with engine.begin() as conn:
        existing = _placement(conn, referral_id)
        withdrawal = domain_intake.receive_withdrawal(event, existing, _tombstone(conn, referral_id) is not None, now)
        if withdrawal.remember:
            conn.execute(
                withdrawal_tombstones.insert().values(referral_id=referral_id, centre=event.centre, withdrawn_at=now)
            )
        if withdrawal.lifecycle is not None:
            conn.execute(
                referrals.update()
                .where(referrals.c.referral_id == referral_id)
                .values(**_lifecycle_values(withdrawal.lifecycle))
            )
        for outcome in withdrawal.history:
            _add_system_outcome(conn, outcome, now)
        enqueue_all(conn, withdrawal.outgoing, now)
        if withdrawal.audit_action:
            # Only erasing a stored referral is audited (domain_intake.receive_withdrawal).
            assert existing is not None
            audit(
                conn,
                actor=SYSTEM_ACTOR,
                actor_kind="system",
                centre=existing.centre,
                referral_id=referral_id,
                action=withdrawal.audit_action,
                now=now,
            )
    return withdrawal.result


def purge_due(engine: Engine, retention_days: int, now: datetime) -> list[tuple[str, str]]:
    """``(referral_id, centre)`` of the referrals whose contact details the retention says to erase.

    Candidates are the ended referrals whose details are still stored (a small set: at most
    the retention period's closures); the rule itself is ``domain.purge_due``.
    """
    with engine.connect() as conn:
        candidates = conn.execute(
            sa.select(referrals.c.referral_id, referrals.c.centre, referrals.c.state, referrals.c.ended_at).where(
                referrals.c.state.in_(list(domain.ENDED_STATES)), referrals.c.contact_erased_at.is_(None)
            )
        ).all()
    return [
        (row.referral_id, row.centre)
        for row in candidates
        if domain.purge_due(row.state, aware(row.ended_at), now, retention_days)
    ]


def erase_for_retention(engine: Engine, referral_id: str, centre: str, now: datetime) -> bool:
    """Erase one referral's stored copy and audit it, together; False when it was erased already."""
    with engine.begin() as conn:
        erased = conn.execute(
            referrals.update()
            .where(referrals.c.referral_id == referral_id, referrals.c.contact_erased_at.is_(None))
            .values(**_erased(now))
        ).rowcount
        if erased:
            audit(
                conn,
                actor=SYSTEM_ACTOR,
                actor_kind="system",
                centre=centre,
                referral_id=referral_id,
                action="contact_details_erased_retention",
                now=now,
            )
    return bool(erased)


def set_aside_undecryptable(engine: Engine, referral: Referral, now: datetime | None = None) -> None:
    """A referral whose contact details do not open: its unreadable blob is dropped, a
    manual-handling case queued (reason ``undecryptable``) and the audit log told, together."""
    now = now or utcnow()
    with engine.begin() as conn:
        dropped = conn.execute(
            referrals.update()
            .where(referrals.c.referral_id == referral.referral_id, referrals.c.personal_sealed.is_not(None))
            .values(personal_sealed=None)
        ).rowcount
        if not dropped:  # a concurrent look did it already
            return
        enqueue_all(conn, (domain_outcomes.undecryptable_case(referral, now),), now)
        audit(
            conn,
            actor=SYSTEM_ACTOR,
            actor_kind="system",
            centre=referral.centre,
            referral_id=referral.referral_id,
            action="contact_details_undecryptable",
            now=now,
        )


def _placement(conn: Connection, referral_id: str) -> Placement | None:
    row = conn.execute(
        sa.select(referrals.c.centre, referrals.c.state).where(referrals.c.referral_id == referral_id).with_for_update()
    ).first()
    return Placement(row.centre, row.state) if row else None


def _tombstone(conn: Connection, referral_id: str) -> sa.Row | None:
    return conn.execute(
        sa.select(withdrawal_tombstones.c.withdrawn_at).where(withdrawal_tombstones.c.referral_id == referral_id)
    ).first()


def _referral_values(event: ReferralIssued, now: datetime) -> dict:
    """The referral's row as the event gives it (the lifecycle columns come from the decision).

    The contact details are kept as they came, sealed under the referral's data key: the
    inbox opens them for each look with the key the key store releases, never stores them open.
    """
    return {
        "referral_id": str(event.referral_id),
        "centre": event.centre,
        "issued_event_id": str(event.event_id),
        "offence": event.offence.value,
        "charged_on": event.charged_on,
        "municipality_code": event.municipality_code,
        "routed_by": event.routed_by.value,
        "contact_due_by": event.contact_due_by,
        "treatment_due_by": event.treatment_due_by,
        "issued_at": event.issued_at.astimezone(UTC),
        "received_at": now,
        "personal_sealed": event.personal,
    }


def _lifecycle_values(lifecycle: Lifecycle) -> dict:
    values = {
        "state": lifecycle.state,
        "last_outcome": lifecycle.last_outcome,
        "ended_at": lifecycle.ended_at,
        "withdrawn_at": lifecycle.withdrawn_at,
        "contact_erased_at": None,
    }
    if lifecycle.contact_erased_at is not None:
        values.update(_erased(lifecycle.contact_erased_at))
    return values


def _erased(now: datetime) -> dict:
    """The contact-detail columns emptied, and the time they were."""
    return {**dict.fromkeys(PERSONAL_COLUMNS), "contact_erased_at": now}


def _add_system_outcome(conn: Connection, outcome: ReferralOutcome, now: datetime) -> None:
    conn.execute(
        outcomes.insert().values(
            event_id=str(outcome.event_id),
            referral_id=str(outcome.referral_id),
            centre=outcome.centre,
            outcome=outcome.outcome.value,
            occurred_at=outcome.occurred_at,
            recorded_at=now,
            recorded_by=SYSTEM_ACTOR,
        )
    )
