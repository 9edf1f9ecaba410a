"""The key store in SQL: data keys made with their consent, released to their grantee,
handed over, destroyed (withdrawal, retention), re-wrapped under a new KEK; the access log.

Only loads and saves; who may have a key is decided in ``domain_keys``.  Every release,
refusal, hand-over and destruction is written to ``key_access_log`` in the transaction that
does it.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import Connection, Engine, bindparam, delete, func, insert, select, update

from henvis.auth import ApiClient
from henvis.db import aware, row_values, utcnow
from henvis.services.consent import domain_keys
from henvis.services.consent.domain_keys import DESTROY_ACTIONS, DestroyedBecause, KeyAction, StoredKey, WithdrawnKeys
from henvis.services.consent.models import (
    consent_events,
    consent_outbox,
    data_keys,
    key_access_log,
    pending_key_withdrawals,
)
from henvis.shredding import KeyEncryptionKeys, Undecryptable, WrappedKey

#: Rows re-wrapped per transaction by a rotation: short transactions, so the API never waits long.
ROTATION_BATCH = 500


# ---------------------------------------------------------------- made and destroyed with events

# Every accepted consent runs these two: built once, given their values as parameters.
_INSERT_KEY = insert(data_keys)
_DELETE_PENDING = delete(pending_key_withdrawals).where(
    pending_key_withdrawals.c.case_pseudonym == bindparam("case_pseudonym")
)


def add(conn: Connection, key: domain_keys.NewDataKey, actor: str, now: datetime) -> None:
    """Store a new consent's data key; if its case was withdrawn before any consent of it
    arrived, the key is destroyed at once (the router holds that withdrawal for this consent)."""
    conn.execute(_INSERT_KEY, row_values(key))
    if conn.execute(_DELETE_PENDING, {"case_pseudonym": key.case_pseudonym}).rowcount:
        _destroy(conn, [key.referral_id], DestroyedBecause.WITHDRAWAL, actor, "police", now)


def destroy_withdrawn(conn: Connection, target: WithdrawnKeys, actor: str, now: datetime) -> int:
    """Destroy the keys a withdrawal names, in the withdrawal's own transaction; the count.

    A case with no consent yet is remembered, so its first consent is born withdrawn.
    """
    query = select(data_keys.c.referral_id, data_keys.c.wrapped_key).where(
        data_keys.c.case_pseudonym == target.case_pseudonym
    )
    if target.referral_id is not None:
        query = query.where(data_keys.c.referral_id == target.referral_id)
    rows = conn.execute(query).all()
    if not rows and target.referral_id is None:
        already = select(pending_key_withdrawals.c.case_pseudonym).where(
            pending_key_withdrawals.c.case_pseudonym == target.case_pseudonym
        )
        if conn.execute(already).first() is None:
            conn.execute(insert(pending_key_withdrawals).values(case_pseudonym=target.case_pseudonym, withdrawn_at=now))
        return 0
    live = [row.referral_id for row in rows if row.wrapped_key is not None]
    _destroy(conn, live, DestroyedBecause.WITHDRAWAL, actor, "police", now)
    return len(live)


def _destroy(
    conn: Connection,
    referral_ids: Sequence[str],
    because: DestroyedBecause,
    actor: str,
    role: str | None,
    now: datetime,
) -> None:
    """Empty the keys of ``referral_ids`` and log it.  A withdrawal also deletes the published
    outbox rows of those consents (their payload is the encrypted consent)."""
    if not referral_ids:
        return
    conn.execute(
        update(data_keys)
        .where(data_keys.c.referral_id.in_(list(referral_ids)))
        .values(kek_id=None, wrapped_key=None, destroyed_at=now, destroyed_reason=because.value)
    )
    for referral_id in referral_ids:
        _log(conn, actor, role, referral_id, DESTROY_ACTIONS[because], now)
    if because is DestroyedBecause.WITHDRAWAL:
        consents = select(consent_events.c.event_id).where(consent_events.c.referral_id.in_(list(referral_ids)))
        conn.execute(
            delete(consent_outbox).where(consent_outbox.c.event_id.in_(consents), consent_outbox.c.sent_at.is_not(None))
        )


def _log(
    conn: Connection, actor: str, role: str | None, referral_id: str | None, action: KeyAction, now: datetime
) -> None:
    conn.execute(
        insert(key_access_log).values(at=now, actor=actor, role=role, referral_id=referral_id, action=action.value)
    )


# ---------------------------------------------------------------- asked for by a client


def _stored(conn: Connection, referral_id: str) -> StoredKey | None:
    row = conn.execute(
        select(data_keys.c.grantee, data_keys.c.returned_by, data_keys.c.kek_id, data_keys.c.wrapped_key).where(
            data_keys.c.referral_id == referral_id
        )
    ).first()
    if row is None:
        return None
    wrapped = WrappedKey(row.kek_id, row.wrapped_key) if row.wrapped_key is not None else None
    return StoredKey(referral_id, row.grantee, row.returned_by, wrapped)


def release(
    engine: Engine, referral_id: uuid.UUID, client: ApiClient, keks: KeyEncryptionKeys, now: datetime | None = None
) -> bytes | None:
    """The data key for ``client``, or None (not its key, destroyed, or none at all: the same).

    Raises ``UnknownKeyEncryptionKey`` when the key is wrapped under a KEK this process lacks.
    """
    now = now or utcnow()
    with engine.begin() as conn:
        key = _stored(conn, str(referral_id))
        if not domain_keys.releasable(key, client.role):
            _log(conn, client.name, client.role, str(referral_id), KeyAction.REFUSED, now)
            return None
        assert key is not None and key.wrapped is not None  # releasable() said so
        data_key = keks.unwrap(referral_id, key.wrapped)
        _log(conn, client.name, client.role, str(referral_id), KeyAction.RELEASED, now)
        return data_key


def hand_to_manual_handling(
    engine: Engine, referral_id: uuid.UUID, client: ApiClient, now: datetime | None = None
) -> bool:
    """A centre returns its referral: its key now goes to the manual-handling role only."""
    now = now or utcnow()
    with engine.begin() as conn:
        verdict = domain_keys.hand_over(_stored(conn, str(referral_id)), client.role)
        if verdict is None:
            _log(conn, client.name, client.role, str(referral_id), KeyAction.REFUSED, now)
            return False
        if verdict:
            conn.execute(
                update(data_keys)
                .where(data_keys.c.referral_id == str(referral_id))
                .values(grantee=domain_keys.MANUAL_HANDLING_ROLE, returned_by=client.role)
            )
            _log(conn, client.name, client.role, str(referral_id), KeyAction.HANDED_TO_MANUAL_HANDLING, now)
        return True


def destroy_for_holder(engine: Engine, referral_id: uuid.UUID, client: ApiClient, now: datetime | None = None) -> bool:
    """The grantee's retention ended: destroy its key.  False (and nothing done) for anyone else."""
    now = now or utcnow()
    with engine.begin() as conn:
        if not domain_keys.releasable(_stored(conn, str(referral_id)), client.role):
            _log(conn, client.name, client.role, str(referral_id), KeyAction.REFUSED, now)
            return False
        _destroy(conn, [str(referral_id)], DestroyedBecause.RETENTION, client.name, client.role, now)
        return True


# ---------------------------------------------------------------- housekeeping


def destroy_expired(engine: Engine, max_age_days: float, now: datetime | None = None) -> int:
    """The backstop: destroy every live key older than ``max_age_days``; the count."""
    now = now or utcnow()
    cutoff = domain_keys.expiry_cutoff(now, max_age_days)
    with engine.begin() as conn:
        due = (
            conn.execute(
                select(data_keys.c.referral_id).where(
                    data_keys.c.created_at < cutoff, data_keys.c.wrapped_key.is_not(None)
                )
            )
            .scalars()
            .all()
        )
        _destroy(conn, due, DestroyedBecause.RETENTION, "key-store-retention", None, now)
    return len(due)


@dataclass
class Rotation:
    """What a rotation did: keys re-wrapped under the current KEK, keys that changed under it
    (destroyed meanwhile: left as they are), and keys it could not re-wrap, by KEK."""

    rewrapped: int = 0
    changed_meanwhile: int = 0
    not_rewrapped: Counter = field(default_factory=Counter)

    @property
    def complete(self) -> bool:
        return not self.not_rewrapped


def rotate(engine: Engine, keks: KeyEncryptionKeys, batch: int = ROTATION_BATCH) -> Rotation:
    """Re-wrap every live data key that is not under ``keks.current``, while the API runs.

    Each batch is one short transaction.  A row is rewritten only if it still holds what was
    read (compare and set), so a key destroyed meanwhile by a withdrawal never comes back.
    """
    rotation = Rotation()
    after = ""
    while True:
        with engine.connect() as conn:
            rows = conn.execute(
                select(data_keys.c.referral_id, data_keys.c.kek_id, data_keys.c.wrapped_key)
                .where(
                    data_keys.c.wrapped_key.is_not(None),
                    data_keys.c.kek_id != keks.current,
                    data_keys.c.referral_id > after,
                )
                .order_by(data_keys.c.referral_id)
                .limit(batch)
            ).all()
        if not rows:
            return rotation
        with engine.begin() as conn:
            for row in rows:
                _rewrap(conn, keks, row.referral_id, WrappedKey(row.kek_id, row.wrapped_key), rotation)
        after = rows[-1].referral_id


def _rewrap(conn: Connection, keks: KeyEncryptionKeys, referral_id: str, old: WrappedKey, rotation: Rotation) -> None:
    if old.kek_id not in keks.ids:
        rotation.not_rewrapped[old.kek_id] += 1
        return
    try:
        data_key = keks.unwrap(uuid.UUID(referral_id), old)
    except Undecryptable:
        rotation.not_rewrapped[old.kek_id] += 1
        return
    new = keks.wrap(uuid.UUID(referral_id), data_key)
    changed = conn.execute(
        update(data_keys)
        .where(
            data_keys.c.referral_id == referral_id,
            data_keys.c.kek_id == old.kek_id,
            data_keys.c.wrapped_key == old.wrapped,
        )
        .values(kek_id=new.kek_id, wrapped_key=new.wrapped)
    ).rowcount
    if changed:
        rotation.rewrapped += 1
    else:
        rotation.changed_meanwhile += 1


def status(engine: Engine) -> dict[str, dict[str, int]]:
    """Live keys by KEK and destroyed keys by reason (``henvis consent keys status``)."""
    with engine.connect() as conn:
        live = conn.execute(
            select(data_keys.c.kek_id, func.count())
            .where(data_keys.c.wrapped_key.is_not(None))
            .group_by(data_keys.c.kek_id)
        ).all()
        destroyed = conn.execute(
            select(data_keys.c.destroyed_reason, func.count())
            .where(data_keys.c.wrapped_key.is_(None))
            .group_by(data_keys.c.destroyed_reason)
        ).all()
    return {"live_by_kek": dict(sorted(live)), "destroyed_by_reason": dict(sorted(destroyed))}


def access_log_rows(engine: Engine, referral_id: str | None = None, limit: int = 10_000) -> list[dict]:
    """The key access log, oldest first (only ``referral_id``'s when given), for auditors."""
    query = select(key_access_log).order_by(key_access_log.c.id).limit(limit)
    if referral_id:
        query = query.where(key_access_log.c.referral_id == referral_id)
    with engine.connect() as conn:
        return [
            {
                "at": aware(row.at).isoformat(),
                "actor": row.actor,
                "role": row.role,
                "referral_id": row.referral_id,
                "action": row.action,
            }
            for row in conn.execute(query)
        ]
