"""SQL adapter of the statistics: apply facts/outcomes idempotently, query raw funnels.

Each event is applied in one transaction that inserts its event_id into
``processed_events`` (the idempotency record) and updates the referral's row, so a
redelivered event (at-least-once) changes nothing and a crash never half-applies one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Literal

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from henvis.schemas.events import ReferralFact, ReferralOutcome
from henvis.services.stats import domain
from henvis.services.stats.models import processed_events, referrals

GroupBy = Literal["month", "municipality"] | None

#: Concurrent first writers of one referral (a fact and an outcome on two replicas) make
#: one insert fail; the loser retries on the row the winner created.
_MAX_ATTEMPTS = 5


@dataclass(frozen=True)
class Filters:
    date_from: date | None = None
    date_to: date | None = None
    municipality: str | None = None
    offence: str | None = None


def _aware(moment: datetime | None) -> datetime | None:
    """SQLite returns naive datetimes; everything stored is UTC."""
    if moment is None or moment.tzinfo is not None:
        return moment
    return moment.replace(tzinfo=UTC)


def _state_from_row(row) -> domain.ReferralState:
    return domain.ReferralState(
        referral_id=row.referral_id,
        decision=row.decision,
        withdrawn=bool(row.withdrawn),
        offence=row.offence,
        municipality_code=row.municipality_code,
        centre=row.centre,
        decided_on=row.decided_on,
        contact_due_by=row.contact_due_by,
        first_contact_at=_aware(row.first_contact_at),
        first_interview=bool(row.first_interview),
        follow_up=bool(row.follow_up),
    )


def _row_from_state(state: domain.ReferralState) -> dict:
    return {
        "referral_id": state.referral_id,
        "decision": state.decision,
        "withdrawn": state.withdrawn,
        "offence": state.offence,
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


class StatsStore:
    def __init__(self, engine: sa.Engine):
        self.engine = engine

    # ------------------------------------------------------------ writing

    def apply_fact(self, fact: ReferralFact) -> bool:
        """Apply a router fact; False when this event_id was applied before."""
        return self._apply(
            str(fact.event_id),
            fact.event_type,
            str(fact.referral_id),
            lambda state: domain.apply_fact(
                state,
                referral_id=str(fact.referral_id),
                decision=str(fact.decision),
                offence=str(fact.offence) if fact.offence else None,
                municipality_code=fact.municipality_code,
                centre=fact.centre,
                decided_on=fact.decided_on,
                contact_due_by=fact.contact_due_by,
            ),
        )

    def apply_outcome(self, outcome: ReferralOutcome) -> bool:
        """Apply a centre outcome; False when this event_id was applied before."""
        return self._apply(
            str(outcome.event_id),
            outcome.event_type,
            str(outcome.referral_id),
            lambda state: domain.apply_outcome(
                state, referral_id=str(outcome.referral_id), outcome=str(outcome.outcome), occurred_at=outcome.occurred_at
            ),
        )

    def _apply(
        self,
        event_id: str,
        event_type: str,
        referral_id: str,
        change: Callable[[domain.ReferralState | None], domain.ReferralState],
    ) -> bool:
        for attempt in range(_MAX_ATTEMPTS):
            try:
                with self.engine.begin() as conn:
                    conn.execute(processed_events.insert().values(event_id=event_id, event_type=event_type))
                    query = sa.select(referrals).where(referrals.c.referral_id == referral_id)
                    if conn.dialect.name == "postgresql":
                        query = query.with_for_update()
                    row = conn.execute(query).first()
                    new_state = change(_state_from_row(row) if row else None)
                    values = _row_from_state(new_state)
                    if row is None:
                        conn.execute(referrals.insert().values(**values))
                    else:
                        conn.execute(referrals.update().where(referrals.c.referral_id == referral_id).values(**values))
                return True
            except IntegrityError:
                if self.is_processed(event_id):
                    return False
                if attempt == _MAX_ATTEMPTS - 1:
                    raise
        raise AssertionError("unreachable")

    def is_processed(self, event_id: str) -> bool:
        with self.engine.connect() as conn:
            found = conn.execute(sa.select(processed_events.c.event_id).where(processed_events.c.event_id == event_id)).first()
        return found is not None

    # ------------------------------------------------------------ reading

    def ping(self) -> bool:
        with self.engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
        return True

    def decision_date_range(self, filters: Filters) -> tuple[date, date] | None:
        """First and last decision date among the filtered referrals (for empty months)."""
        with self.engine.connect() as conn:
            low, high = conn.execute(
                sa.select(sa.func.min(referrals.c.decided_on), sa.func.max(referrals.c.decided_on)).where(
                    *self._conditions(filters)
                )
            ).one()
        return (low, high) if low and high else None

    def funnels(self, filters: Filters, group_by: GroupBy = None) -> dict[str | None, domain.RawFunnel]:
        """Raw (unsuppressed) figures per group: month ``YYYY-MM``, municipality code, or
        one group ``None`` for everything. For the domain's publishing functions only."""
        group_column = {"month": referrals.c.decided_month, "municipality": referrals.c.municipality_code, None: None}[group_by]
        key_columns = [group_column.label("group_key")] if group_column is not None else []
        accepted = referrals.c.decision == "accepted"
        withdrawn = referrals.c.withdrawn.is_(True)

        def count_if(*conditions) -> sa.ColumnElement:
            return sa.func.coalesce(sa.func.sum(sa.case((sa.and_(*conditions), 1), else_=0)), 0)

        counts_query = sa.select(
            *key_columns,
            count_if(accepted).label("accepted"),
            count_if(referrals.c.decision == "declined").label("declined"),
            count_if(accepted, withdrawn).label("withdrawn"),
            count_if(accepted, referrals.c.first_interview.is_(True)).label("first_interviews"),
            count_if(accepted, referrals.c.follow_up.is_(True)).label("follow_ups"),
            count_if(accepted, referrals.c.withdrawn.is_(False), referrals.c.contact_due_by.is_not(None)).label("due_cases"),
            count_if(accepted, referrals.c.withdrawn.is_(False), referrals.c.contacted_by_due.is_(True)).label("contacted_by_due"),
        ).where(*self._conditions(filters))
        days_query = sa.select(
            *key_columns, referrals.c.days_to_first_contact, sa.func.count().label("n")
        ).where(*self._conditions(filters), accepted, referrals.c.days_to_first_contact.is_not(None))
        if group_column is not None:
            counts_query = counts_query.group_by(group_column)
            days_query = days_query.group_by(group_column, referrals.c.days_to_first_contact)
        else:
            days_query = days_query.group_by(referrals.c.days_to_first_contact)

        result: dict[str | None, domain.RawFunnel] = {}
        with self.engine.connect() as conn:
            for row in conn.execute(counts_query):
                key = row.group_key if group_column is not None else None
                result[key] = domain.RawFunnel(
                    accepted=int(row.accepted),
                    declined=int(row.declined),
                    withdrawn=int(row.withdrawn),
                    first_interviews=int(row.first_interviews),
                    follow_ups=int(row.follow_ups),
                    due_cases=int(row.due_cases),
                    contacted_by_due=int(row.contacted_by_due),
                )
            for row in conn.execute(days_query):
                key = row.group_key if group_column is not None else None
                funnel = result.setdefault(key, domain.RawFunnel())
                funnel.days_histogram[int(row.days_to_first_contact)] = int(row.n)
        if group_by is None:
            result.setdefault(None, domain.RawFunnel())
        return result

    @staticmethod
    def _conditions(filters: Filters) -> list[sa.ColumnElement]:
        # Only referrals whose decision is known count; the period is the decision date.
        conditions: list[sa.ColumnElement] = [referrals.c.decision.is_not(None)]
        if filters.date_from:
            conditions.append(referrals.c.decided_on >= filters.date_from)
        if filters.date_to:
            conditions.append(referrals.c.decided_on <= filters.date_to)
        if filters.municipality:
            conditions.append(referrals.c.municipality_code == filters.municipality)
        if filters.offence:
            conditions.append(referrals.c.offence == filters.offence)
        return conditions
