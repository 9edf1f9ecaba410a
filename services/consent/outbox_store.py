"""The relay's side of the outbox in SQL: lease rows, mark them sent, give them back, prune.

Only loads and saves; which rows a relay may take and for how long is decided by
``delivery.plan_lease``. Every function runs its own short transaction.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Connection, Engine, and_, delete, or_, select, update

from henvis.db import utcnow
from henvis.services.consent import delivery
from henvis.services.consent.models import consent_outbox, outbox_lease_lock

#: Ids per ``IN (...)`` list, well below every engine's limit on bound parameters.
_CHUNK = 500


@dataclass(frozen=True)
class LeasedRow:
    """An outbox row leased for publishing: its Kafka key and payload."""

    id: int
    event_id: str
    key: str
    payload: str


def lease(engine: Engine, owner: str, limit: int, lease_seconds: float, now: datetime | None = None) -> list[LeasedRow]:
    """Lease up to ``limit`` unsent rows for ``owner``, in outbox order.

    The transaction first updates the single lease-lock row, so lease transactions of
    several relays run one after another on PostgreSQL and SQLite alike, and each one
    reads the leases the previous one committed. A lease that finds nothing rolls back.
    """
    now = now or utcnow()
    with engine.connect() as conn, conn.begin() as transaction:
        conn.execute(update(outbox_lease_lock).where(outbox_lease_lock.c.id == 1).values(holder=owner, taken_at=now))
        leased_keys = _keys_under_lease(conn, now)
        candidates = _free_rows(conn, now, leased_keys, limit)
        planned = delivery.plan_lease(candidates, leased_keys, owner, now, limit, lease_seconds)
        if not planned.ids:
            # Nothing written: an idle relay must not wake the relays watching a SQLite file.
            transaction.rollback()
            return []
        _save_lease(conn, planned)
        return _load_leased(conn, planned.ids)


def _keys_under_lease(conn: Connection, now: datetime) -> set[str]:
    under_lease = and_(
        consent_outbox.c.sent_at.is_(None),
        consent_outbox.c.lease_until.is_not(None),
        consent_outbox.c.lease_until > now,
    )
    return set(conn.execute(select(consent_outbox.c.kafka_key).where(under_lease).distinct()).scalars())


def _free_rows(conn: Connection, now: datetime, leased_keys: set[str], limit: int) -> list[delivery.OutboxRow]:
    """The oldest unsent rows that are not under lease and not of a leased key."""
    free = select(consent_outbox.c.id, consent_outbox.c.kafka_key).where(
        consent_outbox.c.sent_at.is_(None),
        or_(consent_outbox.c.lease_until.is_(None), consent_outbox.c.lease_until <= now),
    )
    if leased_keys:
        free = free.where(consent_outbox.c.kafka_key.not_in(sorted(leased_keys)))
    rows = conn.execute(free.order_by(consent_outbox.c.id).limit(limit)).all()
    return [delivery.OutboxRow(row.id, row.kafka_key, None, None) for row in rows]


def _save_lease(conn: Connection, planned: delivery.Lease) -> None:
    for chunk in _chunks(planned.ids):
        conn.execute(
            update(consent_outbox)
            .where(consent_outbox.c.id.in_(chunk))
            .values(lease_owner=planned.owner, lease_until=planned.until, attempts=consent_outbox.c.attempts + 1)
        )


def _load_leased(conn: Connection, ids: list[int]) -> list[LeasedRow]:
    columns = (consent_outbox.c.id, consent_outbox.c.event_id, consent_outbox.c.kafka_key, consent_outbox.c.payload)
    leased: list[LeasedRow] = []
    for chunk in _chunks(ids):
        rows = conn.execute(select(*columns).where(consent_outbox.c.id.in_(chunk)))
        leased += (LeasedRow(row.id, row.event_id, row.kafka_key, row.payload) for row in rows)
    leased.sort(key=lambda row: row.id)
    return leased


def mark_sent(engine: Engine, ids: list[int], now: datetime | None = None) -> None:
    """Record that the broker acknowledged these rows; they are never published again."""
    now = now or utcnow()
    with engine.begin() as conn:
        for chunk in _chunks(ids):
            conn.execute(
                update(consent_outbox)
                .where(consent_outbox.c.id.in_(chunk))
                .values(sent_at=now, lease_owner=None, lease_until=None)
            )


def release(engine: Engine, ids: list[int], owner: str) -> None:
    """Give leased rows back (publishing failed) so any relay may retry them at once."""
    with engine.begin() as conn:
        for chunk in _chunks(ids):
            conn.execute(
                update(consent_outbox)
                .where(and_(consent_outbox.c.id.in_(chunk), consent_outbox.c.lease_owner == owner))
                .values(lease_owner=None, lease_until=None)
            )


def prune_sent(engine: Engine, older_than: timedelta, now: datetime | None = None) -> int:
    """Delete published rows (and the personal data in their payload) after the retention."""
    cutoff = delivery.retention_cutoff(now or utcnow(), older_than)
    with engine.begin() as conn:
        return conn.execute(delete(consent_outbox).where(consent_outbox.c.sent_at < cutoff)).rowcount


def _chunks(items: list[int]) -> Iterator[list[int]]:
    for start in range(0, len(items), _CHUNK):
        yield items[start : start + _CHUNK]
