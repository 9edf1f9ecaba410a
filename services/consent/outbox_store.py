"""The relay's side of the outbox in SQL: lease rows, mark them sent, give them back, prune.

Only loads and saves; which rows a relay may take and for how long is decided by
``delivery.plan_lease``. Every function runs its own short transaction.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import BindParameter, Engine, bindparam, delete, or_, select, update

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
    Three statements: the lock, one read of the free rows with their payloads, the lease
    (each one a round trip to PostgreSQL: bench/README.md, issue 18).
    """
    now = now or utcnow()
    with engine.connect() as conn, conn.begin() as transaction:
        conn.execute(_TAKE_LEASE_LOCK, {"owner": owner, "now": now})
        free = [
            LeasedRow(row.id, row.event_id, row.kafka_key, row.payload)
            for row in conn.execute(_FREE_ROWS, {"now": now, "limit": limit})
        ]
        candidates = [delivery.OutboxRow(row.id, row.key, None, None) for row in free]
        planned = delivery.plan_lease(candidates, (), owner, now, limit, lease_seconds)
        if not planned.ids:
            # Nothing written: an idle relay must not wake the relays watching a SQLite file.
            transaction.rollback()
            return []
        for chunk in _chunks(planned.ids):
            conn.execute(_SAVE_LEASE, {"ids": chunk, "owner": planned.owner, "until": planned.until})
        chosen = set(planned.ids)
        return [row for row in free if row.id in chosen]


def mark_sent(engine: Engine, ids: list[int], now: datetime | None = None) -> None:
    """Record that the broker acknowledged these rows; they are never published again."""
    now = now or utcnow()
    with engine.begin() as conn:
        for chunk in _chunks(ids):
            conn.execute(_MARK_SENT, {"ids": chunk, "now": now})


def release(engine: Engine, ids: list[int], owner: str) -> None:
    """Give leased rows back (publishing failed) so any relay may retry them at once."""
    with engine.begin() as conn:
        for chunk in _chunks(ids):
            conn.execute(_RELEASE, {"ids": chunk, "owner": owner})


# The relay's statements, built once and given their values as parameters: building them on
# every round was about a third of a lease's CPU (py-spy, bench/README.md, issue 18).
_NOW: BindParameter[datetime] = bindparam("now")
_IDS = consent_outbox.c.id.in_(bindparam("ids", expanding=True))

_TAKE_LEASE_LOCK = (
    update(outbox_lease_lock).where(outbox_lease_lock.c.id == 1).values(holder=bindparam("owner"), taken_at=_NOW)
)

#: The oldest unsent rows that are not under lease and not of a key under lease (a case
#: another lease holds: its later rows wait, so the case stays in order), in id order.
_FREE_ROWS = (
    select(consent_outbox.c.id, consent_outbox.c.event_id, consent_outbox.c.kafka_key, consent_outbox.c.payload)
    .where(
        consent_outbox.c.sent_at.is_(None),
        or_(consent_outbox.c.lease_until.is_(None), consent_outbox.c.lease_until <= _NOW),
        consent_outbox.c.kafka_key.not_in(
            select(consent_outbox.c.kafka_key).where(
                consent_outbox.c.sent_at.is_(None),
                consent_outbox.c.lease_until.is_not(None),
                consent_outbox.c.lease_until > _NOW,
            )
        ),
    )
    .order_by(consent_outbox.c.id)
    .limit(bindparam("limit"))
)

_SAVE_LEASE = (
    update(consent_outbox)
    .where(_IDS)
    .values(lease_owner=bindparam("owner"), lease_until=bindparam("until"), attempts=consent_outbox.c.attempts + 1)
)
_MARK_SENT = update(consent_outbox).where(_IDS).values(sent_at=_NOW, lease_owner=None, lease_until=None)
_RELEASE = (
    update(consent_outbox)
    .where(_IDS, consent_outbox.c.lease_owner == bindparam("owner"))
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
