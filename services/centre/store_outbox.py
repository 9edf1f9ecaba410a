"""SQL adapter of the outbox: events wait here, written in the transaction of the change they
announce, until the relay has them acknowledged by the broker."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from henvis.db import is_sqlite
from henvis.schemas.events import Event
from henvis.services.centre.database import utcnow
from henvis.services.centre.domain import Outgoing
from henvis.services.centre.models import outbox


def enqueue(conn: Connection, topic_base: str, event: Event, now: datetime) -> None:
    """Queue ``event`` for the relay; a second queueing of the same event_id is ignored."""
    exists = conn.execute(sa.select(outbox.c.id).where(outbox.c.event_id == str(event.event_id))).first()
    if exists:
        return
    conn.execute(
        outbox.insert().values(
            topic_base=topic_base,
            event_id=str(event.event_id),
            kafka_key=event.kafka_key().decode(),
            payload=event.model_dump_json(),
            created_at=now,
        )
    )


def enqueue_all(conn: Connection, outgoing: tuple[Outgoing, ...], now: datetime) -> None:
    """Queue each of ``outgoing`` in order (the relay publishes in this order)."""
    for item in outgoing:
        enqueue(conn, item.topic_base, item.event, now)


def queue_alone(engine: Engine, outgoing: Outgoing, now: datetime) -> None:
    """Queue one event in a transaction of its own (nothing else changes with it)."""
    with engine.begin() as conn:
        enqueue(conn, outgoing.topic_base, outgoing.event, now)


def _pending_query(limit: int) -> sa.Select:
    return (
        sa.select(outbox.c.id, outbox.c.topic_base, outbox.c.kafka_key, outbox.c.payload)
        .where(outbox.c.sent_at.is_(None))
        .order_by(outbox.c.id)
        .limit(limit)
    )


def pending_outbox(engine: Engine, limit: int = 500) -> Sequence[sa.Row]:
    """The oldest rows not yet sent: id, topic_base, kafka_key, payload."""
    with engine.connect() as conn:
        return conn.execute(_pending_query(limit)).all()


def mark_sent(engine: Engine, ids: list[int], now: datetime | None = None) -> None:
    """Stamp the rows ``ids`` as acknowledged by the broker."""
    if ids:
        with engine.begin() as conn:
            conn.execute(outbox.update().where(outbox.c.id.in_(ids)).values(sent_at=now or utcnow()))


def relay_batch(engine: Engine, publish: Callable[[Sequence[sa.Row]], None], limit: int = 500) -> int:
    """Publish pending outbox rows with ``publish(rows)`` (returns once the broker acked) and mark them sent.

    On PostgreSQL the rows are claimed with ``FOR UPDATE SKIP LOCKED`` for the duration, so
    several worker replicas relay disjoint rows instead of publishing each row twice. On
    SQLite (one deployment, one file) the rows are read without holding the write lock, so a
    slow broker never blocks caseworkers from recording outcomes.
    """
    if is_sqlite(engine):
        rows = pending_outbox(engine, limit)
        if rows:
            publish(rows)
            mark_sent(engine, [row.id for row in rows])
        return len(rows)
    with engine.begin() as conn:
        rows = conn.execute(_pending_query(limit).with_for_update(skip_locked=True)).all()
        if rows:
            publish(rows)
            conn.execute(outbox.update().where(outbox.c.id.in_([row.id for row in rows])).values(sent_at=utcnow()))
        return len(rows)
