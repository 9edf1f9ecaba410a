"""SQL adapter of the centre inbox: every write that must be atomic is one transaction here.

The worker and the web app share these functions; each takes the time ``now`` as an
argument so tests (and the pilot replay) control the clock.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError

from henvis.db import is_sqlite, make_engine
from henvis.deadlines import local_date
from henvis.schemas.events import (
    ManualHandling,
    ManualReason,
    Outcome,
    ReferralIssued,
    ReferralOutcome,
    ReferralWithdrawn,
    derived_id,
)
from henvis.schemas.topics import MANUAL_HANDLING, REFERRAL_OUTCOMES
from henvis.services.centre import domain
from henvis.services.centre.models import (
    PERSONAL_COLUMNS,
    access_log,
    login_failures,
    outbox,
    outcomes,
    referrals,
    users,
    withdrawal_tombstones,
)

#: Namespace for ids the centre derives (acknowledgements, manual-handling notices), so a
#: redelivered Kafka message derives the same id and the outbox refuses the duplicate.
CENTRE_NAMESPACE = uuid.UUID("0c3b7a52-3f7e-5d3e-8b6e-5a1c4e2d9f01")

SYSTEM_ACTOR = "system"


def utcnow() -> datetime:
    return datetime.now(UTC)


def aware(moment: datetime | None) -> datetime | None:
    """SQLite hands back naive datetimes; everything is stored in UTC."""
    if moment is None:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def make_centre_engine(url: str) -> Engine:
    """The shared engine, plus: SQLite transactions take the write lock when they begin.

    The worker and the web app write the same SQLite file; a deferred transaction that
    reads, then writes after the other process wrote, fails at once with "database is
    locked" instead of waiting. ``BEGIN IMMEDIATE`` makes it wait (busy_timeout) instead.
    """
    engine = make_engine(url)
    if is_sqlite(engine):

        @sa.event.listens_for(engine, "connect")
        def _manual_transactions(dbapi_connection, _record):
            dbapi_connection.isolation_level = None

        @sa.event.listens_for(engine, "begin")
        def _begin_immediate(conn):
            conn.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


class NotFound(Exception):
    """No such referral for this centre (another centre's referral looks exactly the same)."""


class EventIdConflict(Exception):
    """The event_id was already used for a different outcome or referral."""


@dataclass(frozen=True)
class Recorded:
    event_id: str
    referral_id: str
    outcome: str
    status: str
    created: bool

    def as_json(self) -> dict:
        return {"event_id": self.event_id, "referral_id": self.referral_id, "outcome": self.outcome, "status": self.status}


# --------------------------------------------------------------------------- outbox + audit


def enqueue(conn: Connection, topic_base: str, event, now: datetime) -> None:
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


def _audit(conn: Connection, *, actor: str, actor_kind: str, centre: str | None, referral_id: str | None, action: str, now: datetime) -> None:
    conn.execute(
        access_log.insert().values(at=now, actor=actor, actor_kind=actor_kind, centre=centre, referral_id=referral_id, action=action)
    )


def log_access(engine: Engine, *, actor: str, actor_kind: str, centre: str | None, referral_id: str | None, action: str, now: datetime | None = None) -> None:
    with engine.begin() as conn:
        _audit(conn, actor=actor, actor_kind=actor_kind, centre=centre, referral_id=referral_id, action=action, now=now or utcnow())


# --------------------------------------------------------------------------- worker side


def _erase_values(now: datetime) -> dict:
    return {**{column: None for column in PERSONAL_COLUMNS}, "contact_erased_at": now}


def _acknowledge_withdrawal(conn: Connection, referral_id: str, centre: str, now: datetime, *, stored: bool) -> ReferralOutcome:
    ack = ReferralOutcome(
        event_id=derived_id(CENTRE_NAMESPACE, "withdrawal-acknowledged", referral_id),
        occurred_at=now,
        referral_id=uuid.UUID(referral_id),
        centre=centre,
        outcome=Outcome.WITHDRAWAL_ACKNOWLEDGED,
    )
    if stored:
        conn.execute(
            outcomes.insert().values(
                event_id=str(ack.event_id), referral_id=referral_id, centre=centre, outcome=ack.outcome.value,
                occurred_at=now, recorded_at=now, recorded_by=SYSTEM_ACTOR,
            )
        )
    enqueue(conn, REFERRAL_OUTCOMES.name, ack, now)
    return ack


def ingest_issued(engine: Engine, event: ReferralIssued, topic_centre: str, now: datetime | None = None) -> str:
    """Put a referral in the inbox once.

    Returns ``stored``, ``duplicate``, ``stored_withdrawn`` (its withdrawal came first),
    ``rerouted`` (returned by another centre, now issued to this one) or ``misrouted``.
    """
    now = now or utcnow()
    referral_id = str(event.referral_id)
    with engine.begin() as conn:
        if event.centre != topic_centre:
            # A referral for another centre on this centre's topic: do not keep the contact
            # details here; a person re-routes it (no personal data in the notice).
            notice = ManualHandling(
                event_id=derived_id(CENTRE_NAMESPACE, "misrouted", event.event_id),
                occurred_at=now,
                reason=ManualReason.INVALID_EVENT,
                source_event_id=event.event_id,
                source_event_type=event.event_type,
                referral_id=event.referral_id,
                municipality_code=event.municipality_code,
                offence=event.offence,
                detail=f"referral for centre {event.centre} arrived on the topic of centre {topic_centre}",
            )
            enqueue(conn, MANUAL_HANDLING.name, notice, now)
            return "misrouted"
        existing = conn.execute(
            sa.select(referrals.c.centre, referrals.c.state).where(referrals.c.referral_id == referral_id).with_for_update()
        ).first()
        rerouted = (
            existing is not None
            and existing.centre != event.centre
            and existing.state == Outcome.RETURNED_WRONG_CENTRE.value
        )
        if existing is not None and not rerouted:
            return "duplicate"
        tombstone = conn.execute(
            sa.select(withdrawal_tombstones.c.withdrawn_at).where(withdrawal_tombstones.c.referral_id == referral_id)
        ).first()
        person = event.person
        address = person.postal_address
        values = dict(
            referral_id=referral_id,
            centre=event.centre,
            issued_event_id=str(event.event_id),
            offence=event.offence.value,
            charged_on=event.charged_on,
            municipality_code=event.municipality_code,
            routed_by=event.routed_by.value,
            contact_due_by=event.contact_due_by,
            treatment_due_by=event.treatment_due_by,
            issued_at=event.issued_at.astimezone(UTC),
            received_at=now,
            state=domain.NEW,
            case_ref=event.case_ref,
            person_full_name=person.full_name,
            person_phone=person.phone,
            person_email=person.email,
            person_street=address.street if address else None,
            person_postcode=address.postcode if address else None,
            person_city=address.city if address else None,
            person_cpr=person.cpr,
        )
        if tombstone:
            # The withdrawal overtook the referral: store it already withdrawn and erased.
            withdrawn_at = aware(tombstone.withdrawn_at)
            values.update(_erase_values(now), state=domain.WITHDRAWN, last_outcome=Outcome.WITHDRAWAL_ACKNOWLEDGED.value,
                          withdrawn_at=withdrawn_at, ended_at=withdrawn_at)
        if rerouted:
            # Returned by one centre, re-routed by the manual desk to another (both served by
            # this deployment): the referral starts afresh in the new centre's inbox.
            for column in ("last_outcome", "ended_at", "withdrawn_at", "contact_erased_at"):
                values.setdefault(column, None)
            conn.execute(referrals.update().where(referrals.c.referral_id == referral_id).values(**values))
            return "rerouted"
        conn.execute(referrals.insert().values(**values))
        return "stored_withdrawn" if tombstone else "stored"


def ingest_withdrawn(engine: Engine, event: ReferralWithdrawn, now: datetime | None = None) -> str:
    """Erase the contact details at once, mark withdrawn, queue the acknowledgement; one transaction.

    Returns ``erased``, ``duplicate`` or ``tombstone`` (the referral has not arrived yet).
    """
    now = now or utcnow()
    referral_id = str(event.referral_id)
    with engine.begin() as conn:
        row = conn.execute(
            sa.select(referrals.c.state, referrals.c.centre).where(referrals.c.referral_id == referral_id).with_for_update()
        ).first()
        if row is None:
            if conn.execute(sa.select(withdrawal_tombstones.c.referral_id).where(withdrawal_tombstones.c.referral_id == referral_id)).first():
                return "duplicate"
            conn.execute(withdrawal_tombstones.insert().values(referral_id=referral_id, centre=event.centre, withdrawn_at=now))
            # Nothing is stored to erase, so the withdrawal is carried out already.
            _acknowledge_withdrawal(conn, referral_id, event.centre, now, stored=False)
            return "tombstone"
        if row.state == domain.WITHDRAWN:
            return "duplicate"
        conn.execute(
            referrals.update()
            .where(referrals.c.referral_id == referral_id)
            .values(**_erase_values(now), state=domain.WITHDRAWN, last_outcome=Outcome.WITHDRAWAL_ACKNOWLEDGED.value,
                    withdrawn_at=now, ended_at=now)
        )
        _acknowledge_withdrawal(conn, referral_id, row.centre, now, stored=True)
        _audit(conn, actor=SYSTEM_ACTOR, actor_kind="system", centre=row.centre, referral_id=referral_id,
               action="contact_details_erased_withdrawal", now=now)
        return "erased"


def purge(engine: Engine, retention_days: int, now: datetime | None = None) -> int:
    """Erase contact details of referrals closed or withdrawn at least ``retention_days`` ago.

    Candidates are the ended referrals whose details are still stored (a small set: at most
    the retention period's closures); the rule itself is ``domain.purge_due``.
    """
    now = now or utcnow()
    ended = list(domain.CLOSED_STATES | {domain.WITHDRAWN})
    with engine.begin() as conn:
        candidates = conn.execute(
            sa.select(referrals.c.referral_id, referrals.c.centre, referrals.c.state, referrals.c.ended_at).where(
                referrals.c.state.in_(ended), referrals.c.contact_erased_at.is_(None)
            )
        ).all()
        due = [row for row in candidates if domain.purge_due(row.state, aware(row.ended_at), now, retention_days)]
        for row in due:
            conn.execute(referrals.update().where(referrals.c.referral_id == row.referral_id).values(**_erase_values(now)))
            _audit(conn, actor=SYSTEM_ACTOR, actor_kind="system", centre=row.centre, referral_id=row.referral_id,
                   action="contact_details_erased_retention", now=now)
    return len(due)


def _pending_query(limit: int):
    return (
        sa.select(outbox.c.id, outbox.c.topic_base, outbox.c.kafka_key, outbox.c.payload)
        .where(outbox.c.sent_at.is_(None))
        .order_by(outbox.c.id)
        .limit(limit)
    )


def pending_outbox(engine: Engine, limit: int = 500) -> list[sa.Row]:
    with engine.connect() as conn:
        return conn.execute(_pending_query(limit)).all()


def mark_sent(engine: Engine, ids: list[int], now: datetime | None = None) -> None:
    if ids:
        with engine.begin() as conn:
            conn.execute(outbox.update().where(outbox.c.id.in_(ids)).values(sent_at=now or utcnow()))


def relay_batch(engine: Engine, publish, limit: int = 500) -> int:
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


# --------------------------------------------------------------------------- API side

_SUMMARY_COLUMNS = (
    referrals.c.referral_id,
    referrals.c.centre,
    referrals.c.state,
    referrals.c.offence,
    referrals.c.contact_due_by,
    referrals.c.treatment_due_by,
    referrals.c.issued_at,
    referrals.c.last_outcome,
    referrals.c.charged_on,
)


def _summary(row, today: date) -> dict:
    status = domain.status_of(row.state, row.contact_due_by, row.treatment_due_by, today)
    return {
        "referral_id": row.referral_id,
        "centre": row.centre,
        "status": status.value,
        "offence": row.offence,
        "contact_due_by": row.contact_due_by.isoformat(),
        "treatment_due_by": row.treatment_due_by.isoformat(),
        "issued_at": aware(row.issued_at).isoformat(),
        "last_outcome": row.last_outcome,
        "next_outcomes": domain.next_outcomes(row.state),
    }


def list_referrals(engine: Engine, centre: str, wanted: str = "open", now: datetime | None = None) -> list[dict]:
    """One centre's referrals matching ``wanted``, most urgent deadline first; no contact details."""
    today = local_date(now or utcnow())
    query = sa.select(*_SUMMARY_COLUMNS).where(referrals.c.centre == centre)
    if wanted == "withdrawn":
        query = query.where(referrals.c.state == domain.WITHDRAWN)
    elif wanted == "closed":
        query = query.where(referrals.c.state.in_(list(domain.CLOSED_STATES)))
    elif wanted in ("open", "overdue"):
        query = query.where(referrals.c.state.not_in(list(domain.CLOSED_STATES | {domain.WITHDRAWN})))
    with engine.connect() as conn:
        rows = conn.execute(query).all()
    rows = [row for row in rows if domain.matches_filter(domain.status_of(row.state, row.contact_due_by, row.treatment_due_by, today), wanted)]
    rows.sort(key=lambda row: (domain.current_deadline(row.state, row.contact_due_by, row.treatment_due_by), aware(row.issued_at)))
    return [_summary(row, today) for row in rows]


def get_referral(engine: Engine, centre: str, referral_id: str, now: datetime | None = None) -> dict:
    """One referral with contact details (None once erased) and its outcomes; NotFound if not this centre's."""
    today = local_date(now or utcnow())
    with engine.connect() as conn:
        row = conn.execute(
            sa.select(referrals).where(referrals.c.referral_id == referral_id, referrals.c.centre == centre)
        ).first()
        if row is None:
            raise NotFound(referral_id)
        history = conn.execute(
            sa.select(outcomes.c.event_id, outcomes.c.outcome, outcomes.c.occurred_at, outcomes.c.recorded_by)
            .where(outcomes.c.referral_id == referral_id)
            .order_by(outcomes.c.occurred_at, outcomes.c.recorded_at)
        ).all()
    detail = _summary(row, today)
    if row.contact_erased_at is None:
        address = None
        if row.person_street:
            address = {"street": row.person_street, "postcode": row.person_postcode, "city": row.person_city}
        detail["person"] = {
            "full_name": row.person_full_name,
            "phone": row.person_phone,
            "email": row.person_email,
            "postal_address": address,
            "cpr": row.person_cpr,
            "case_ref": row.case_ref,
        }
    else:
        detail["person"] = None
    detail["charged_on"] = row.charged_on.isoformat()
    detail["contact_erased_at"] = aware(row.contact_erased_at).isoformat() if row.contact_erased_at else None
    detail["outcomes"] = [
        {"event_id": h.event_id, "outcome": h.outcome, "occurred_at": aware(h.occurred_at).isoformat(), "recorded_by": h.recorded_by}
        for h in history
    ]
    return detail


def get_referral_or_none(engine: Engine, centre: str, referral_id: str) -> dict | None:
    try:
        return get_referral(engine, centre, referral_id)
    except NotFound:
        return None


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
    seal=None,
) -> Recorded:
    """Record an outcome: state change, outcome row, outbox row(s) and audit line in one transaction.

    Raises NotFound, EventIdConflict, domain.IllegalTransition or domain.InvalidOccurredAt.
    ``seal(bytes) -> str | None`` encrypts the contact details for the manual-handling role
    when a referral is returned to it; without it the notice carries no contact details.
    """
    now = now or utcnow()
    occurred_at = (occurred_at or now).astimezone(UTC)  # stored in UTC (SQLite keeps no zone)
    event_id = event_id or uuid.uuid4()
    try:
        return _record_outcome_once(engine, centre, referral_id, outcome, actor, actor_kind, occurred_at, event_id, now, seal)
    except IntegrityError:
        # A concurrent request with the same event_id won the race: answer as a repeat.
        return _record_outcome_once(engine, centre, referral_id, outcome, actor, actor_kind, occurred_at, event_id, now, seal)


def _sealed_contact_details(row, seal) -> str | None:
    """The returned referral's contact details, encrypted for the manual-handling role (or None)."""
    if seal is None or row.contact_erased_at is not None:
        return None
    payload = {
        "referral_id": row.referral_id,
        "case_ref": row.case_ref,
        "offence": row.offence,
        "charged_on": row.charged_on.isoformat(),
        "municipality_code": row.municipality_code,
        "person": {
            "full_name": row.person_full_name,
            "phone": row.person_phone,
            "email": row.person_email,
            "postal_address": {"street": row.person_street, "postcode": row.person_postcode, "city": row.person_city}
            if row.person_street else None,
            "cpr": row.person_cpr,
        },
    }
    return seal(json.dumps(payload).encode())


def _record_outcome_once(engine, centre, referral_id, outcome, actor, actor_kind, occurred_at, event_id, now, seal) -> Recorded:
    today = local_date(now)
    with engine.begin() as conn:
        row = conn.execute(
            sa.select(referrals).where(referrals.c.referral_id == referral_id, referrals.c.centre == centre).with_for_update()
        ).first()
        if row is None:
            raise NotFound(referral_id)

        def answer(event: str, recorded_outcome: str, state: str, created: bool) -> Recorded:
            status = domain.status_of(state, row.contact_due_by, row.treatment_due_by, today).value
            return Recorded(event, referral_id, recorded_outcome, status, created)

        earlier = conn.execute(sa.select(outcomes).where(outcomes.c.event_id == str(event_id))).first()
        if earlier is not None:
            if earlier.referral_id != referral_id or earlier.outcome != outcome:
                raise EventIdConflict(str(event_id))
            return answer(earlier.event_id, earlier.outcome, row.state, False)

        decision = domain.decide(row.state, outcome)
        if decision.repeat:
            last = conn.execute(
                sa.select(outcomes.c.event_id)
                .where(outcomes.c.referral_id == referral_id, outcomes.c.outcome == outcome)
                .order_by(outcomes.c.recorded_at.desc())
            ).first()
            return answer(last.event_id, outcome, row.state, False)
        domain.check_occurred_at(occurred_at, row.charged_on, now)

        event = ReferralOutcome(
            event_id=event_id, occurred_at=occurred_at, referral_id=uuid.UUID(referral_id), centre=centre, outcome=Outcome(outcome)
        )
        conn.execute(
            outcomes.insert().values(
                event_id=str(event_id), referral_id=referral_id, centre=centre, outcome=outcome,
                occurred_at=occurred_at, recorded_at=now, recorded_by=actor,
            )
        )
        ended_at = now if domain.is_closed(decision.new_state) else None
        conn.execute(
            referrals.update()
            .where(referrals.c.referral_id == referral_id)
            .values(state=decision.new_state, last_outcome=outcome, ended_at=ended_at)
        )
        enqueue(conn, REFERRAL_OUTCOMES.name, event, now)
        if outcome == Outcome.RETURNED_WRONG_CENTRE.value:
            # Back to manual handling for re-routing. Contact details travel only sealed for
            # the manual-handling role; without a key the desk finds the case by referral id.
            notice = ManualHandling(
                event_id=derived_id(CENTRE_NAMESPACE, "returned", event_id),
                occurred_at=now,
                reason=ManualReason.RETURNED_WRONG_CENTRE,
                referral_id=uuid.UUID(referral_id),
                municipality_code=row.municipality_code,
                offence=row.offence,
                detail=f"returned by centre {centre}: the person is not this centre's resident",
                sealed_payload=_sealed_contact_details(row, seal),
            )
            enqueue(conn, MANUAL_HANDLING.name, notice, now)
        _audit(conn, actor=actor, actor_kind=actor_kind, centre=centre, referral_id=referral_id,
               action=f"outcome_recorded:{outcome}", now=now)
        return answer(str(event_id), outcome, decision.new_state, True)


def access_log_rows(engine: Engine, referral_id: str | None = None, limit: int = 10_000) -> list[dict]:
    query = sa.select(access_log).order_by(access_log.c.id).limit(limit)
    if referral_id:
        query = query.where(access_log.c.referral_id == referral_id)
    with engine.connect() as conn:
        return [
            {"at": aware(r.at).isoformat(), "actor": r.actor, "actor_kind": r.actor_kind, "centre": r.centre,
             "referral_id": r.referral_id, "action": r.action}
            for r in conn.execute(query)
        ]


def centre_counts(engine: Engine, now: datetime | None = None) -> dict[str, tuple[int, int]]:
    """centre -> (open, overdue) for the metrics."""
    today = local_date(now or utcnow())
    counts: dict[str, list[int]] = {}
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(referrals.c.centre, referrals.c.state, referrals.c.contact_due_by, referrals.c.treatment_due_by)
            .where(referrals.c.state.not_in(list(domain.CLOSED_STATES | {domain.WITHDRAWN})))
        ).all()
    for row in rows:
        entry = counts.setdefault(row.centre, [0, 0])
        entry[0] += 1
        if domain.status_of(row.state, row.contact_due_by, row.treatment_due_by, today) is domain.Status.OVERDUE:
            entry[1] += 1
    return {centre: (entry[0], entry[1]) for centre, entry in counts.items()}


# --------------------------------------------------------------------------- caseworkers


def add_user(engine: Engine, username: str, centre: str, password_hash: str, now: datetime | None = None) -> bool:
    """Create or replace a caseworker's account; True when it is new."""
    with engine.begin() as conn:
        exists = conn.execute(sa.select(users.c.username).where(users.c.username == username)).first()
        if exists:
            conn.execute(users.update().where(users.c.username == username).values(centre=centre, password_hash=password_hash, active=True))
            return False
        conn.execute(users.insert().values(username=username, centre=centre, password_hash=password_hash, created_at=now or utcnow(), active=True))
        return True


def get_user(engine: Engine, username: str):
    with engine.connect() as conn:
        return conn.execute(sa.select(users).where(users.c.username == username, users.c.active.is_(True))).first()


def set_password_hash(engine: Engine, username: str, password_hash: str) -> None:
    with engine.begin() as conn:
        conn.execute(users.update().where(users.c.username == username).values(password_hash=password_hash))


def login_subject(username: str, client_ip: str) -> str:
    """Rate-limit key; a digest so the table holds neither user names nor addresses in clear."""
    return hashlib.sha256(f"{username.lower()}|{client_ip}".encode()).hexdigest()


def recent_login_failures(engine: Engine, subject: str, window_seconds: int, now: datetime | None = None) -> int:
    since = (now or utcnow()) - timedelta(seconds=window_seconds)
    with engine.connect() as conn:
        return conn.execute(
            sa.select(sa.func.count()).select_from(login_failures).where(login_failures.c.subject == subject, login_failures.c.at >= since)
        ).scalar_one()


def add_login_failure(engine: Engine, subject: str, now: datetime | None = None) -> None:
    now = now or utcnow()
    with engine.begin() as conn:
        conn.execute(login_failures.insert().values(subject=subject, at=now))
        # Old failures no longer count against anyone; keep the table small.
        conn.execute(login_failures.delete().where(login_failures.c.at < now - timedelta(days=1)))


def clear_login_failures(engine: Engine, subject: str) -> None:
    with engine.begin() as conn:
        conn.execute(login_failures.delete().where(login_failures.c.subject == subject))
