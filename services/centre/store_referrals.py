"""SQL adapter reading a centre's referrals: rows in, :mod:`domain_inbox` snapshots and views out.

Lists never read the contact-detail columns; only one referral's detail (and recording an
outcome on it) does, and it hands the sealed contact details to ``reveal`` (``casework``
opens them with the data key the key store releases).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from henvis.deadlines import local_date
from henvis.services.centre import domain, domain_inbox
from henvis.services.centre.database import aware, utcnow
from henvis.services.centre.domain_fhir_resources import TaskView
from henvis.services.centre.domain_inbox import Contact, HistoryEntry, Referral
from henvis.services.centre.models import outcomes, referrals


class NotFound(Exception):
    """No such referral for this centre (another centre's referral looks exactly the same)."""


#: Every column but the contact details.
_CASE_COLUMNS = (
    referrals.c.referral_id,
    referrals.c.centre,
    referrals.c.state,
    referrals.c.offence,
    referrals.c.charged_on,
    referrals.c.municipality_code,
    referrals.c.contact_due_by,
    referrals.c.treatment_due_by,
    referrals.c.issued_at,
    referrals.c.last_outcome,
    referrals.c.contact_erased_at,
)


#: Opens a referral's sealed contact details (``casework.revealer``); without one they stay sealed.
Reveal = Callable[[Referral], Referral]


def _referral(row: sa.Row, contact: Contact | None = None, sealed: str | None = None) -> Referral:
    return Referral(
        referral_id=row.referral_id,
        centre=row.centre,
        state=row.state,
        offence=row.offence,
        charged_on=row.charged_on,
        municipality_code=row.municipality_code,
        contact_due_by=row.contact_due_by,
        treatment_due_by=row.treatment_due_by,
        issued_at=aware(row.issued_at),
        last_outcome=row.last_outcome,
        contact_erased_at=aware(row.contact_erased_at),
        contact=contact,
        sealed=sealed,
    )


def _plain_contact(row: sa.Row) -> Contact | None:
    """The plain contact details of a referral received before sealing (None for any other)."""
    if row.contact_erased_at is not None or row.person_full_name is None:
        return None
    return Contact(
        case_ref=row.case_ref,
        full_name=row.person_full_name,
        phone=row.person_phone,
        email=row.person_email,
        street=row.person_street,
        postcode=row.person_postcode,
        city=row.person_city,
        cpr=row.person_cpr,
    )


def load_referral(conn: Connection, centre: str, referral_id: str, *, for_update: bool = False) -> Referral:
    """One referral of ``centre`` with its contact details; NotFound if it is not this centre's."""
    query = sa.select(referrals).where(referrals.c.referral_id == referral_id, referrals.c.centre == centre)
    row = conn.execute(query.with_for_update() if for_update else query).first()
    if row is None:
        raise NotFound(referral_id)
    sealed = row.personal_sealed if row.contact_erased_at is None else None
    return _referral(row, _plain_contact(row), sealed)


def _history(conn: Connection, referral_id: str) -> list[HistoryEntry]:
    rows = conn.execute(
        sa.select(outcomes.c.event_id, outcomes.c.outcome, outcomes.c.occurred_at, outcomes.c.recorded_by)
        .where(outcomes.c.referral_id == referral_id)
        .order_by(outcomes.c.occurred_at, outcomes.c.recorded_at)
    ).all()
    return [HistoryEntry(row.event_id, row.outcome, aware(row.occurred_at), row.recorded_by) for row in rows]


def _states_wanted(wanted: str) -> sa.ColumnElement | None:
    """The SQL filter narrowing the rows to read; the domain's filter has the last word."""
    if wanted == "withdrawn":
        return referrals.c.state == domain.WITHDRAWN
    if wanted == "closed":
        return referrals.c.state.in_(list(domain.CLOSED_STATES))
    if wanted in ("open", "overdue"):
        return referrals.c.state.not_in(list(domain.ENDED_STATES))
    return None


def list_referrals(engine: Engine, centre: str, wanted: str = "open", now: datetime | None = None) -> list[dict]:
    """One centre's referrals matching ``wanted``, most urgent deadline first; no contact details."""
    today = local_date(now or utcnow())
    query = sa.select(*_CASE_COLUMNS).where(referrals.c.centre == centre)
    states = _states_wanted(wanted)
    if states is not None:
        query = query.where(states)
    with engine.connect() as conn:
        rows = conn.execute(query).all()
    return domain_inbox.inbox([_referral(row) for row in rows], wanted, today)


def get_referral(
    engine: Engine, centre: str, referral_id: str, reveal: Reveal | None = None, now: datetime | None = None
) -> dict:
    """One referral with the contact details ``reveal`` opened (None once erased, or without
    ``reveal``) and its outcomes; NotFound if not this centre's."""
    today = local_date(now or utcnow())
    with engine.connect() as conn:
        referral = load_referral(conn, centre, referral_id)
        history = _history(conn, referral_id)
    # Opened outside the transaction: the key store is another service, asked over HTTP.
    return domain_inbox.detail(reveal(referral) if reveal else referral, history, today)


def exists(engine: Engine, centre: str, referral_id: str) -> bool:
    """Whether ``centre``'s inbox holds the referral."""
    query = sa.select(referrals.c.referral_id).where(
        referrals.c.referral_id == referral_id, referrals.c.centre == centre
    )
    with engine.connect() as conn:
        return conn.execute(query).first() is not None


def centre_counts(engine: Engine, now: datetime | None = None) -> dict[str, tuple[int, int]]:
    """centre -> (open, overdue) for the metrics."""
    today = local_date(now or utcnow())
    with engine.connect() as conn:
        rows = conn.execute(sa.select(*_CASE_COLUMNS).where(referrals.c.state.not_in(list(domain.ENDED_STATES)))).all()
    return domain_inbox.open_and_overdue((_referral(row) for row in rows), today)


def open_referrals(engine: Engine) -> list[Referral]:
    """Every centre's referrals that are neither closed nor withdrawn, without contact details."""
    with engine.connect() as conn:
        rows = conn.execute(sa.select(*_CASE_COLUMNS).where(referrals.c.state.not_in(list(domain.ENDED_STATES)))).all()
    return [_referral(row) for row in rows]


def task_views(
    engine: Engine, centre: str, referral_id: str | None = None, states: frozenset[str] | None = None
) -> list[TaskView]:
    """``centre``'s referrals (the one ``referral_id``; those in ``states``) as FHIR Tasks need
    them, no contact details: each with its version (1 + its outcomes) and when it last changed."""
    history = (
        sa.select(
            outcomes.c.referral_id,
            sa.func.count().label("outcome_count"),
            sa.func.max(outcomes.c.recorded_at).label("last_recorded"),
        )
        .group_by(outcomes.c.referral_id)
        .subquery()
    )
    query = (
        sa.select(*_CASE_COLUMNS, history.c.outcome_count, history.c.last_recorded)
        .outerjoin(history, history.c.referral_id == referrals.c.referral_id)
        .where(referrals.c.centre == centre)
        .order_by(referrals.c.issued_at, referrals.c.referral_id)
    )
    if referral_id is not None:
        query = query.where(referrals.c.referral_id == referral_id)
    if states is not None:
        query = query.where(referrals.c.state.in_(sorted(states)))
    with engine.connect() as conn:
        rows = conn.execute(query).all()
    return [
        TaskView(_referral(row), 1 + (row.outcome_count or 0), aware(row.last_recorded) or aware(row.issued_at))
        for row in rows
    ]


def task_version(conn: Connection, referral_id: str) -> int:
    """The referral's Task version (1 + its outcomes), read in ``conn``'s transaction."""
    count = conn.execute(sa.select(sa.func.count()).where(outcomes.c.referral_id == referral_id)).scalar_one()
    return 1 + count
