"""The ``referrals`` table <-> :class:`~henvis.services.stats.domain.ReferralState`."""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum

import sqlalchemy as sa

from henvis.schemas.events import Decision, Offence
from henvis.services.stats import domain
from henvis.services.stats.models import referrals


def load_for_update(conn: sa.Connection, referral_id: str) -> domain.ReferralState | None:
    """The referral's state, row-locked on PostgreSQL until the transaction ends; None if new."""
    query = sa.select(referrals).where(referrals.c.referral_id == referral_id)
    if conn.dialect.name == "postgresql":
        query = query.with_for_update()
    row = conn.execute(query).first()
    return state_from_row(row) if row else None


def save(conn: sa.Connection, state: domain.ReferralState, *, exists: bool) -> None:
    """Write ``state`` to its row (an update when the row ``exists``, else an insert)."""
    values = row_from_state(state)
    if exists:
        conn.execute(referrals.update().where(referrals.c.referral_id == state.referral_id).values(**values))
    else:
        conn.execute(referrals.insert().values(**values))


def state_from_row(row: sa.Row) -> domain.ReferralState:
    """The state a ``referrals`` row holds."""
    return domain.ReferralState(
        referral_id=row.referral_id,
        decision=Decision(row.decision) if row.decision else None,
        withdrawn=bool(row.withdrawn),
        offence=Offence(row.offence) if row.offence else None,
        municipality_code=row.municipality_code,
        centre=row.centre,
        decided_on=row.decided_on,
        contact_due_by=row.contact_due_by,
        first_contact_at=_aware(row.first_contact_at),
        first_interview=bool(row.first_interview),
        follow_up=bool(row.follow_up),
    )


def row_from_state(state: domain.ReferralState) -> dict:
    """The ``referrals`` row of ``state``, with the derived columns the queries filter on."""
    return {
        "referral_id": state.referral_id,
        "decision": _text(state.decision),
        "withdrawn": state.withdrawn,
        "offence": _text(state.offence),
        "municipality_code": state.municipality_code,
        "centre": state.centre,
        "decided_on": state.decided_on,
        "decided_month": state.decided_month,
        "contact_due_by": state.contact_due_by,
        "first_contact_at": state.first_contact_at.astimezone(UTC) if state.first_contact_at else None,
        "days_to_first_contact": state.days_to_first_contact,
        "contacted_by_due": state.contacted_by_due,
        "first_interview": state.first_interview,
        "follow_up": state.follow_up,
    }


def _aware(moment: datetime | None) -> datetime | None:
    """SQLite returns naive datetimes; everything stored is UTC."""
    if moment is None or moment.tzinfo is not None:
        return moment
    return moment.replace(tzinfo=UTC)


def _text(value: StrEnum | None) -> str | None:
    return value.value if value is not None else None
