"""The consent database: accept an event durably with its outbox row, lease and mark rows.

Every function takes an ``Engine`` and runs its own short transaction; the rules (what is a
replay, what a relay may lease) come from ``domain.py``.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine, and_, delete, func, insert, or_, select, update
from sqlalchemy.exc import IntegrityError

from henvis.schemas.events import ConsentGiven, Event
from henvis.services.consent import domain
from henvis.services.consent.models import consent_events, consent_outbox, outbox_lease_lock


def utcnow() -> datetime:
    return datetime.now(UTC)


def _aware(value: datetime | None) -> datetime | None:
    """SQLite hands datetimes back naive; everything stored here is UTC."""
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


@dataclass(frozen=True)
class AcceptOutcome:
    verdict: domain.Verdict
    event_id: uuid.UUID


def accept(
    engine: Engine,
    submitted: Event,
    published: Event,
    client_name: str,
    now: datetime | None = None,
) -> AcceptOutcome:
    """Store ``submitted``'s idempotency record and ``published`` in the outbox, atomically.

    ``submitted`` is what the client sent (its canonical hash decides replay/conflict);
    ``published`` is what goes to Kafka (a withdrawal enriched with its case_ref).
    Database errors propagate: the caller answers 503, never 2xx, when this fails.
    """
    body_hash = domain.canonical_hash(submitted)
    event_id = str(submitted.event_id)
    stored = _stored_hash(engine, event_id)
    if stored is not None:
        return AcceptOutcome(domain.verdict(stored, body_hash), submitted.event_id)
    now = now or utcnow()
    referral_id = domain.referral_id_of(submitted)
    try:
        with engine.begin() as conn:
            conn.execute(
                insert(consent_events).values(
                    event_id=event_id,
                    event_type=submitted.event_type,
                    body_sha256=body_hash,
                    case_ref=getattr(published, "case_ref", None),
                    referral_id=str(referral_id) if referral_id else None,
                    client_name=client_name,
                    received_at=now,
                )
            )
            conn.execute(
                insert(consent_outbox).values(
                    event_id=event_id,
                    kafka_key=published.kafka_key().decode(),
                    payload=published.to_bytes().decode(),
                    created_at=now,
                )
            )
    except IntegrityError:
        # A concurrent request with the same event_id won the race: judge against it.
        stored = _stored_hash(engine, event_id)
        if stored is None:
            raise
        return AcceptOutcome(domain.verdict(stored, body_hash), submitted.event_id)
    return AcceptOutcome(domain.Verdict.NEW, submitted.event_id)


def _stored_hash(engine: Engine, event_id: str) -> str | None:
    with engine.connect() as conn:
        return conn.execute(
            select(consent_events.c.body_sha256).where(consent_events.c.event_id == event_id)
        ).scalar_one_or_none()


def known_referral(engine: Engine, referral_id: uuid.UUID) -> domain.KnownReferral | None:
    """The case of a referral_id this service accepted a consent.given for.

    None for a referral_id never accepted; a ``KnownReferral`` without a case_ref when the
    case number was erased by ``forget_case_refs``.
    """
    with engine.connect() as conn:
        row = conn.execute(
            select(consent_events.c.case_ref).where(
                consent_events.c.referral_id == str(referral_id),
                consent_events.c.event_type == ConsentGiven.model_fields["event_type"].default,
            )
        ).one_or_none()
    return domain.KnownReferral(row.case_ref) if row is not None else None


def ping(engine: Engine) -> bool:
    with engine.connect() as conn:
        conn.execute(select(1))
    return True


# ---------------------------------------------------------------------------- relay side


@dataclass(frozen=True)
class LeasedRow:
    id: int
    event_id: str
    key: str
    payload: str


def lease(engine: Engine, owner: str, limit: int, lease_seconds: float, now: datetime | None = None) -> list[LeasedRow]:
    """Lease up to ``limit`` unsent rows for ``owner``, in outbox order.

    The transaction first updates the single lease-lock row, so lease transactions of
    several relays run one after another on PostgreSQL and SQLite alike, and each one
    reads the leases the previous one committed.
    """
    now = now or utcnow()
    with engine.begin() as conn:
        conn.execute(update(outbox_lease_lock).where(outbox_lease_lock.c.id == 1).values(holder=owner, taken_at=now))
        unsent = consent_outbox.c.sent_at.is_(None)
        under_lease = and_(unsent, consent_outbox.c.lease_until.is_not(None), consent_outbox.c.lease_until > now)
        leased_keys = set(conn.execute(select(consent_outbox.c.kafka_key).where(under_lease).distinct()).scalars())
        free = select(consent_outbox.c.id, consent_outbox.c.kafka_key).where(
            unsent, or_(consent_outbox.c.lease_until.is_(None), consent_outbox.c.lease_until <= now)
        )
        if leased_keys:
            free = free.where(consent_outbox.c.kafka_key.not_in(sorted(leased_keys)))
        candidates = conn.execute(free.order_by(consent_outbox.c.id).limit(limit)).all()
        rows = [domain.OutboxRow(r.id, r.kafka_key, None, None) for r in candidates]
        chosen = domain.choose_lease(rows, now, limit, leased_keys)
        if not chosen:
            return []
        until = now + timedelta(seconds=lease_seconds)
        for chunk in _chunks(chosen, 500):
            conn.execute(
                update(consent_outbox)
                .where(consent_outbox.c.id.in_(chunk))
                .values(lease_owner=owner, lease_until=until, attempts=consent_outbox.c.attempts + 1)
            )
        leased = []
        for chunk in _chunks(chosen, 500):
            leased += conn.execute(
                select(consent_outbox.c.id, consent_outbox.c.event_id, consent_outbox.c.kafka_key, consent_outbox.c.payload)
                .where(consent_outbox.c.id.in_(chunk))
            ).all()
    leased.sort(key=lambda r: r.id)
    return [LeasedRow(r.id, r.event_id, r.kafka_key, r.payload) for r in leased]


def mark_sent(engine: Engine, ids: list[int], now: datetime | None = None) -> None:
    """Record that the broker acknowledged these rows; they are never published again."""
    now = now or utcnow()
    with engine.begin() as conn:
        for chunk in _chunks(ids, 500):
            conn.execute(
                update(consent_outbox)
                .where(consent_outbox.c.id.in_(chunk))
                .values(sent_at=now, lease_owner=None, lease_until=None)
            )


def release(engine: Engine, ids: list[int], owner: str) -> None:
    """Give leased rows back (publishing failed) so any relay may retry them at once."""
    with engine.begin() as conn:
        for chunk in _chunks(ids, 500):
            conn.execute(
                update(consent_outbox)
                .where(and_(consent_outbox.c.id.in_(chunk), consent_outbox.c.lease_owner == owner))
                .values(lease_owner=None, lease_until=None)
            )


@dataclass(frozen=True)
class Backlog:
    unsent: int
    oldest_age_seconds: float


def backlog(engine: Engine, now: datetime | None = None) -> Backlog:
    now = now or utcnow()
    with engine.connect() as conn:
        count, oldest = conn.execute(
            select(func.count(), func.min(consent_outbox.c.created_at)).where(consent_outbox.c.sent_at.is_(None))
        ).one()
    oldest = _aware(oldest)
    return Backlog(count, max(0.0, (now - oldest).total_seconds()) if oldest else 0.0)


def prune_sent(engine: Engine, older_than: timedelta, now: datetime | None = None) -> int:
    """Delete published rows (and the personal data in their payload) after the retention."""
    cutoff = (now or utcnow()) - older_than
    with engine.begin() as conn:
        return conn.execute(delete(consent_outbox).where(consent_outbox.c.sent_at < cutoff)).rowcount


def forget_case_refs(engine: Engine, older_than: timedelta, now: datetime | None = None) -> int:
    """Erase the case number (personal data) of events received before the retention; the row count.

    The idempotency record itself stays (replays and conflicts are still recognised); only a
    withdrawal naming just the referral_id can no longer be resolved to its case.
    """
    cutoff = (now or utcnow()) - older_than
    with engine.begin() as conn:
        return conn.execute(
            update(consent_events)
            .where(consent_events.c.received_at < cutoff, consent_events.c.case_ref.is_not(None))
            .values(case_ref=None)
        ).rowcount


def _chunks(items: list, size: int):
    for start in range(0, len(items), size):
        yield items[start : start + size]
