"""The consent database: accepted events with their outbox rows, referrals, backlog, retention.

Every function takes an ``Engine``, runs its own short transaction and only loads and saves:
what to store, what is a replay and how old a row may get are decided in ``domain.py`` and
``delivery.py``. The relay's side of the outbox (leases) is in ``outbox_store.py``.
"""

from __future__ import annotations

import threading
import uuid
from contextlib import AbstractContextManager, nullcontext
from dataclasses import fields
from datetime import datetime, timedelta
from weakref import WeakKeyDictionary

from sqlalchemy import Connection, Engine, Insert, TextClause, func, insert, or_, select, text, update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

from henvis.db import aware, row_values, utcnow
from henvis.schemas.events import ConsentGiven
from henvis.services.consent import delivery, domain, store_keys
from henvis.services.consent.domain_keys import DataProtection, NewDataKey, WithdrawnKeys
from henvis.services.consent.models import (
    OUTBOX_CHANNEL,
    consent_events,
    consent_outbox,
    data_keys,
    pending_key_withdrawals,
)
from henvis.shredding import CasePseudonyms, new_data_key

#: Sent in every accept transaction on PostgreSQL (a plain new consent, stored by one statement,
#: calls pg_notify in it instead); delivered to the listening relays on commit.
_NOTIFY_RELAYS = text(f"NOTIFY {OUTBOX_CHANNEL}")

#: Failures that mean "the database cannot be reached right now", as opposed to a bug.
DATABASE_UNAVAILABLE = (OperationalError, InterfaceError, PoolTimeoutError, ConnectionError)


def accept(
    engine: Engine,
    submitted: domain.PoliceEvent,
    client_name: str,
    protection: DataProtection,
    withdrawn: WithdrawnKeys | None = None,
    now: datetime | None = None,
) -> domain.Acceptance:
    """Store ``submitted``'s idempotency record and what it publishes in the outbox,
    atomically, with a consent's data key, or destroying the keys a withdrawal names.

    ``submitted`` is what the client sent (its canonical hash decides replay/conflict); a
    withdrawal comes with ``withdrawn``, what ``domain.resolve_withdrawal`` resolved it to.
    Database errors propagate: the caller answers 503, never 2xx, when this fails.
    """
    event_id = str(submitted.event_id)
    now = now or utcnow()
    protecting = domain.Protecting(protection, new_data_key())
    # Optimistic: most events are new, so the rows are written without looking the event_id up
    # first; the idempotency record's insert does nothing when the event_id is already stored,
    # and only then is the stored hash read (bench/README.md, issue 18).
    acceptance = domain.decide_acceptance(None, submitted, client_name, now, protecting, withdrawn)
    new = acceptance.new
    try:
        if new is not None and _insert_consent_at_once(engine, new):
            return acceptance
        with _one_writer(engine), engine.begin() as conn:
            if new is not None and _insert(conn, new, now):
                return acceptance
    except IntegrityError:
        pass  # a concurrent request with the same event_id won a race: judge against it
    with engine.connect() as conn:
        stored = _stored_hash(conn, event_id)
    if stored is None:
        raise RuntimeError("the event was neither stored nor found")
    return domain.decide_acceptance(stored, submitted, client_name, now, protecting, withdrawn)


#: SQLite lets one transaction write at a time; the others wait in its busy handler, which
#: sleeps 1, 2, 5, 10 ... 100 ms between tries.  The API's own requests queue on this lock
#: instead and start the moment the previous one commits (bench/README.md, issue 18).
_SQLITE_WRITERS: WeakKeyDictionary[Engine, threading.Lock] = WeakKeyDictionary()
_SQLITE_WRITERS_LOCK = threading.Lock()


def _one_writer(engine: Engine) -> AbstractContextManager:
    """On SQLite, one accept transaction of this process at a time; no-op elsewhere."""
    if engine.dialect.name != "sqlite":
        return nullcontext()
    with _SQLITE_WRITERS_LOCK:
        return _SQLITE_WRITERS.setdefault(engine, threading.Lock())


def _stored_hash(conn: Connection, event_id: str) -> str | None:
    return conn.execute(
        select(consent_events.c.body_sha256).where(consent_events.c.event_id == event_id)
    ).scalar_one_or_none()


def _insert(conn: Connection, new: domain.NewEvent, now: datetime) -> bool:
    """In the caller's transaction: never an idempotency record without its outbox row, never a
    consent without its data key, never a withdrawal whose keys survive it.  False, and nothing
    written, when the event_id is already stored."""
    if not conn.execute(_INSERT_IF_NEW[conn.dialect.name], row_values(new.record)).rowcount:
        return False
    conn.execute(_INSERT_OUTBOX, row_values(new.entry))
    if new.data_key is not None:
        store_keys.add(conn, new.data_key, new.record.client_name, now)
    if new.withdrawn_keys is not None:
        store_keys.destroy_withdrawn(conn, new.withdrawn_keys, new.record.client_name, now)
    _announce(conn)
    return True


# The accept path's statements, built once and given their values as parameters: building and
# cache-keying a statement with .values() on every request was a tenth of the API's CPU
# (py-spy, bench/README.md, issue 18).
#: The idempotency record's insert, doing nothing when its event_id is already stored.
_INSERT_IF_NEW: dict[str, Insert] = {
    "postgresql": postgresql_insert(consent_events).on_conflict_do_nothing(index_elements=["event_id"]),
    "sqlite": sqlite_insert(consent_events).on_conflict_do_nothing(index_elements=["event_id"]),
}
_INSERT_OUTBOX = insert(consent_outbox)


def _insert_consent_at_once(engine: Engine, new: domain.NewEvent) -> bool:
    """PostgreSQL: a new consent's record, outbox row and data key, and the relays' wake-up,
    in one statement and one round trip instead of seven (issue 18).  False, and nothing
    written, when this is not a plain new consent on PostgreSQL, when the event_id is already
    stored, or when the case has a withdrawal waiting for its first consent: ``_insert``
    then decides in a transaction, as for every other event."""
    if engine.dialect.name != "postgresql" or new.data_key is None or new.withdrawn_keys is not None:
        return False
    parameters = {
        **_prefixed("event_", row_values(new.record)),
        **_prefixed("outbox_", row_values(new.entry)),
        **_prefixed("key_", row_values(new.data_key)),
    }
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        return conn.execute(_INSERT_CONSENT_AT_ONCE, parameters).first() is not None


def _prefixed(prefix: str, values: dict[str, object]) -> dict[str, object]:
    return {prefix + name: value for name, value in values.items()}


def _insert_consent_statement() -> TextClause:
    """The statement of :func:`_insert_consent_at_once`: data-modifying CTEs, each insert
    taking its row only when the idempotency record's went in; one row back when it did."""

    def columns(record_type: type) -> list[str]:
        return [field.name for field in fields(record_type)]

    def values(prefix: str, names: list[str]) -> str:
        return ", ".join(f":{prefix}{name}" for name in names)

    event, entry, key = columns(domain.EventRecord), columns(domain.OutboxEntry), columns(NewDataKey)
    return text(
        f"WITH event AS ("
        f" INSERT INTO {consent_events.name} ({', '.join(event)}) SELECT {values('event_', event)}"
        f" WHERE NOT EXISTS (SELECT 1 FROM {pending_key_withdrawals.name}"
        f" WHERE case_pseudonym = :key_case_pseudonym)"
        f" ON CONFLICT (event_id) DO NOTHING RETURNING event_id),"
        f" outbox AS (INSERT INTO {consent_outbox.name} ({', '.join(entry)}) SELECT {values('outbox_', entry)} FROM event),"
        f" data_key AS (INSERT INTO {data_keys.name} ({', '.join(key)}) SELECT {values('key_', key)} FROM event)"
        f" SELECT pg_notify('{OUTBOX_CHANNEL}', '') FROM event"
    )


_INSERT_CONSENT_AT_ONCE = _insert_consent_statement()


def _announce(conn: Connection) -> None:
    """Wake the listening relays when, and only if, this transaction commits (PostgreSQL).

    SQLite has no notifications; its relays watch the database file instead (``wakeup.py``).
    """
    if conn.dialect.name == "postgresql":
        conn.execute(_NOTIFY_RELAYS)


def known_referral(engine: Engine, referral_id: uuid.UUID, pseudonyms: CasePseudonyms) -> domain.KnownReferral | None:
    """The case of a referral_id this service accepted a consent.given for, by its pseudonym.

    None for a referral_id never accepted; a ``KnownReferral`` without a pseudonym when it
    was erased by ``forget_case_refs``.  A row from before case pseudonyms (it kept the case
    number itself) is answered with its case number's pseudonym.
    """
    with engine.connect() as conn:
        row = conn.execute(
            select(consent_events.c.case_pseudonym, consent_events.c.case_ref).where(
                consent_events.c.referral_id == str(referral_id),
                consent_events.c.event_type == ConsentGiven.model_fields["event_type"].default,
            )
        ).one_or_none()
    if row is None:
        return None
    legacy = pseudonyms(row.case_ref) if row.case_ref is not None else None
    return domain.KnownReferral(row.case_pseudonym or legacy)


def ping(engine: Engine) -> bool:
    """True when the database answers; raises when it cannot be reached."""
    with engine.connect() as conn:
        conn.execute(select(1))
    return True


def backlog(engine: Engine, now: datetime | None = None) -> delivery.Backlog:
    """How many outbox rows wait to be published, and the age of the oldest."""
    now = now or utcnow()
    with engine.connect() as conn:
        unsent, oldest = conn.execute(
            select(func.count(), func.min(consent_outbox.c.created_at)).where(consent_outbox.c.sent_at.is_(None))
        ).one()
    return delivery.backlog_of(unsent, aware(oldest), now)


def forget_case_refs(engine: Engine, older_than: timedelta, now: datetime | None = None) -> int:
    """Erase the case pseudonym of events received before the retention (and the case number
    rows from before pseudonyms kept); the row count.

    The idempotency record itself stays (replays and conflicts are still recognised); only a
    withdrawal naming just the referral_id can no longer be resolved to its case.
    """
    cutoff = delivery.retention_cutoff(now or utcnow(), older_than)
    named = or_(consent_events.c.case_pseudonym.is_not(None), consent_events.c.case_ref.is_not(None))
    with engine.begin() as conn:
        return conn.execute(
            update(consent_events)
            .where(consent_events.c.received_at < cutoff, named)
            .values(case_pseudonym=None, case_ref=None)
        ).rowcount
