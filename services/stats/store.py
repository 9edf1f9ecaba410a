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
from henvis.services.stats.models import contact_days_daily, funnel_daily, processed_events, referrals

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
                    old_state = _state_from_row(row) if row else None
                    new_state = change(old_state)
                    values = _row_from_state(new_state)
                    if row is None:
                        conn.execute(referrals.insert().values(**values))
                    else:
                        conn.execute(referrals.update().where(referrals.c.referral_id == referral_id).values(**values))
                    _update_aggregates(conn, *domain.aggregate_changes(old_state, new_state))
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
                sa.select(sa.func.min(funnel_daily.c.decided_on), sa.func.max(funnel_daily.c.decided_on)).where(
                    *self._conditions(funnel_daily, filters)
                )
            ).one()
        return (low, high) if low and high else None

    def funnels(self, filters: Filters, group_by: GroupBy = None) -> dict[str | None, domain.RawFunnel]:
        """Raw (unsuppressed) figures per group: month ``YYYY-MM``, municipality code ("" for
        none), or one group ``None`` for everything. For the domain's publishing functions only.

        Reads the daily aggregates, not the referrals: the cost grows with the number of
        days x municipalities x offences in the period."""
        def group_of(table):
            return {"month": table.c.decided_month, "municipality": table.c.municipality_code, None: None}[group_by]

        counts_group = group_of(funnel_daily)
        counts_query = sa.select(
            *([counts_group.label("group_key")] if counts_group is not None else []),
            *(sa.func.coalesce(sa.func.sum(funnel_daily.c[name]), 0).label(name) for name in domain.AGGREGATE_COUNTERS),
        ).where(*self._conditions(funnel_daily, filters))
        days_group = group_of(contact_days_daily)
        days_query = sa.select(
            *([days_group.label("group_key")] if days_group is not None else []),
            contact_days_daily.c.days,
            sa.func.sum(contact_days_daily.c.referrals).label("n"),
        ).where(*self._conditions(contact_days_daily, filters))
        if counts_group is not None:
            counts_query = counts_query.group_by(counts_group)
            days_query = days_query.group_by(days_group, contact_days_daily.c.days)
        else:
            days_query = days_query.group_by(contact_days_daily.c.days)

        result: dict[str | None, domain.RawFunnel] = {}
        with self.engine.connect() as conn:
            for row in conn.execute(counts_query):
                key = row.group_key if counts_group is not None else None
                result[key] = domain.RawFunnel(**{name: int(getattr(row, name)) for name in domain.AGGREGATE_COUNTERS})
            for row in conn.execute(days_query):
                if not row.n:
                    continue
                key = row.group_key if days_group is not None else None
                funnel = result.setdefault(key, domain.RawFunnel())
                funnel.days_histogram[int(row.days)] = int(row.n)
        if group_by is None:
            result.setdefault(None, domain.RawFunnel())
        return result

    def rebuild_aggregates(self) -> None:
        """Recompute the daily aggregates from the referrals (after a bulk load or a repair)."""
        with self.engine.begin() as conn:
            conn.execute(funnel_daily.delete())
            conn.execute(contact_days_daily.delete())
            for statement in rebuild_aggregates_sql():
                conn.execute(statement)

    @staticmethod
    def _conditions(table: sa.Table, filters: Filters) -> list[sa.ColumnElement]:
        # The period is the decision date.
        conditions: list[sa.ColumnElement] = []
        if filters.date_from:
            conditions.append(table.c.decided_on >= filters.date_from)
        if filters.date_to:
            conditions.append(table.c.decided_on <= filters.date_to)
        if filters.municipality:
            conditions.append(table.c.municipality_code == filters.municipality)
        if filters.offence:
            conditions.append(table.c.offence == filters.offence)
        return conditions


def _upsert(conn: sa.Connection, table: sa.Table, key: dict, deltas: dict[str, int]) -> None:
    """Add ``deltas`` to the row of ``key``, creating it when missing (atomic per row)."""
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    statement = insert(table).values(**key, **deltas)
    statement = statement.on_conflict_do_update(
        index_elements=[column.name for column in table.primary_key.columns],
        set_={name: table.c[name] + statement.excluded[name] for name in deltas},
    )
    conn.execute(statement)


def _update_aggregates(conn: sa.Connection, counters: dict, days: dict) -> None:
    for (decided_on, municipality, offence), deltas in counters.items():
        key = {"decided_on": decided_on, "municipality_code": municipality, "offence": offence}
        _upsert(conn, funnel_daily, {**key, "decided_month": decided_on.strftime("%Y-%m")}, deltas)
    for ((decided_on, municipality, offence), days_value), delta in days.items():
        key = {"decided_on": decided_on, "municipality_code": municipality, "offence": offence, "days": days_value}
        _upsert(conn, contact_days_daily, {**key, "decided_month": decided_on.strftime("%Y-%m")}, {"referrals": delta})


def rebuild_aggregates_sql() -> list[sa.Executable]:
    """INSERT ... SELECT statements that compute the daily aggregates from ``referrals``
    (the same rules as ``domain.funnel_of``); used by the migration and ``rebuild_aggregates``."""
    r = referrals.c
    accepted = r.decision == "accepted"
    municipality = sa.func.coalesce(r.municipality_code, "")
    offence = sa.func.coalesce(r.offence, "")

    def count_if(*conditions) -> sa.ColumnElement:
        return sa.func.sum(sa.case((sa.and_(*conditions), 1), else_=0))

    not_withdrawn = r.withdrawn.is_(False)
    counts = sa.select(
        r.decided_on, municipality, offence, r.decided_month,
        count_if(accepted),
        count_if(r.decision == "declined"),
        count_if(accepted, r.withdrawn.is_(True)),
        count_if(accepted, r.first_interview.is_(True)),
        count_if(accepted, r.follow_up.is_(True)),
        count_if(accepted, not_withdrawn, r.contact_due_by.is_not(None)),
        count_if(accepted, not_withdrawn, r.contact_due_by.is_not(None), r.contacted_by_due.is_(True)),
    ).where(r.decision.is_not(None), r.decided_on.is_not(None)).group_by(r.decided_on, municipality, offence, r.decided_month)
    days = sa.select(
        r.decided_on, municipality, offence, r.days_to_first_contact, r.decided_month, sa.func.count()
    ).where(accepted, r.decided_on.is_not(None), r.days_to_first_contact.is_not(None)).group_by(
        r.decided_on, municipality, offence, r.days_to_first_contact, r.decided_month
    )
    return [
        funnel_daily.insert().from_select(
            ["decided_on", "municipality_code", "offence", "decided_month", *domain.AGGREGATE_COUNTERS], counts
        ),
        contact_days_daily.insert().from_select(
            ["decided_on", "municipality_code", "offence", "days", "decided_month", "referrals"], days
        ),
    ]
