"""SQL adapter of the statistics: apply facts/outcomes idempotently, query raw funnels.

Each event is applied in one transaction that inserts its event_id into
``processed_events`` (the idempotency record) and updates the referral's row, so a
redelivered event (at-least-once) changes nothing and a crash never half-applies one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from typing import Literal

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from henvis.schemas.events import ReferralFact, ReferralOutcome
from henvis.services.stats import domain
from henvis.services.stats.models import contact_days_daily, funnel_daily, processed_events
from henvis.services.stats.store_aggregates import rebuild_aggregates_sql, update_aggregates
from henvis.services.stats.store_referrals import load_for_update, save

GroupBy = Literal["month", "municipality"] | None
StateChange = Callable[[domain.ReferralState | None], domain.ReferralState]

#: Concurrent first writers of one referral (a fact and an outcome on two replicas) make
#: one insert fail; the loser retries on the row the winner created.
_MAX_ATTEMPTS = 5


@dataclass(frozen=True)
class Filters:
    """Which referrals a query counts: decision dates (inclusive), municipality, offence."""

    date_from: date | None = None
    date_to: date | None = None
    municipality: str | None = None
    offence: str | None = None


class StatsStore:
    """The statistics database: referrals, the idempotency record and the daily aggregates."""

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
                decision=fact.decision,
                offence=fact.offence,
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
                state, referral_id=str(outcome.referral_id), outcome=outcome.outcome, occurred_at=outcome.occurred_at
            ),
        )

    def _apply(self, event_id: str, event_type: str, referral_id: str, change: StateChange) -> bool:
        """Load the referral, apply the pure ``change``, save it and its aggregate deltas."""
        for attempt in range(_MAX_ATTEMPTS):
            try:
                with self.engine.begin() as conn:
                    conn.execute(processed_events.insert().values(event_id=event_id, event_type=event_type))
                    old_state = load_for_update(conn, referral_id)
                    new_state = change(old_state)
                    save(conn, new_state, exists=old_state is not None)
                    update_aggregates(conn, *domain.aggregate_changes(old_state, new_state))
                return True
            except IntegrityError:
                if self.is_processed(event_id):
                    return False
                if attempt == _MAX_ATTEMPTS - 1:
                    raise
        raise AssertionError("unreachable")

    def is_processed(self, event_id: str) -> bool:
        """Was the event with this id applied?"""
        with self.engine.connect() as conn:
            found = conn.execute(
                sa.select(processed_events.c.event_id).where(processed_events.c.event_id == event_id)
            ).first()
        return found is not None

    def rebuild_aggregates(self) -> None:
        """Recompute the daily aggregates from the referrals (after a bulk load or a repair)."""
        with self.engine.begin() as conn:
            conn.execute(funnel_daily.delete())
            conn.execute(contact_days_daily.delete())
            for statement in rebuild_aggregates_sql():
                conn.execute(statement)

    # ------------------------------------------------------------ reading

    def ping(self) -> bool:
        """True when the database answers (readiness)."""
        with self.engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
        return True

    def decision_date_range(self, filters: Filters) -> tuple[date, date] | None:
        """First and last decision date among the filtered referrals (for empty months)."""
        with self.engine.connect() as conn:
            low, high = conn.execute(
                sa.select(sa.func.min(funnel_daily.c.decided_on), sa.func.max(funnel_daily.c.decided_on)).where(
                    *_conditions(funnel_daily, filters)
                )
            ).one()
        return (low, high) if low and high else None

    def cube(self) -> dict[tuple[str, str, str], domain.RawFunnel]:
        """Raw counters (no histogram) per decision month, municipality code and offence ("" for
        none), over all time: the cube the one protection of every table is decided on
        (issue 14). One statement, so one snapshot: margins read by separate statements while
        the worker writes would not add up to one total. For the domain's protection only."""
        columns = (funnel_daily.c.decided_month, funnel_daily.c.municipality_code, funnel_daily.c.offence)
        sums = (sa.func.sum(funnel_daily.c[name]).label(name) for name in domain.AGGREGATE_COUNTERS)
        query = sa.select(*columns, *sums).group_by(*columns)
        with self.engine.connect() as conn:
            return {
                (row.decided_month, row.municipality_code, row.offence): _counted_funnel(row)
                for row in conn.execute(query)
            }

    def funnels(self, filters: Filters, group_by: GroupBy = None) -> dict[str | None, domain.RawFunnel]:
        """Raw (unsuppressed) figures per group: month ``YYYY-MM``, municipality code ("" for
        none), or one group ``None`` for everything. For the domain's publishing functions only.

        Reads the daily aggregates, not the referrals: the cost grows with the number of
        days x municipalities x offences in the period."""
        result: dict[str | None, domain.RawFunnel] = {}
        with self.engine.connect() as conn:
            for row in conn.execute(_counts_query(filters, group_by)):
                result[_group_key(row, group_by)] = _counted_funnel(row)
            for row in conn.execute(_days_query(filters, group_by)):
                if row.n:
                    funnel = result.setdefault(_group_key(row, group_by), domain.RawFunnel())
                    funnel.days_histogram[int(row.days)] = int(row.n)
        if group_by is None:
            result.setdefault(None, domain.RawFunnel())
        return result


def _counted_funnel(row: sa.Row) -> domain.RawFunnel:
    """The funnel of a row of :func:`_counts_query`: its counters, no histogram yet."""
    funnel = domain.RawFunnel()
    for name in domain.AGGREGATE_COUNTERS:
        setattr(funnel, name, int(getattr(row, name)))
    return funnel


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


def _group_column(table: sa.Table, group_by: GroupBy) -> sa.ColumnElement | None:
    return {"month": table.c.decided_month, "municipality": table.c.municipality_code, None: None}[group_by]


def _group_key(row: sa.Row, group_by: GroupBy) -> str | None:
    return row.group_key if group_by is not None else None


def _counts_query(filters: Filters, group_by: GroupBy) -> sa.Select:
    group = _group_column(funnel_daily, group_by)
    sums = (sa.func.coalesce(sa.func.sum(funnel_daily.c[name]), 0).label(name) for name in domain.AGGREGATE_COUNTERS)
    if group is None:
        return sa.select(*sums).where(*_conditions(funnel_daily, filters))
    return sa.select(group.label("group_key"), *sums).where(*_conditions(funnel_daily, filters)).group_by(group)


def _days_query(filters: Filters, group_by: GroupBy) -> sa.Select:
    table = contact_days_daily
    group = _group_column(table, group_by)
    groups = [group] if group is not None else []
    return (
        sa.select(
            *(column.label("group_key") for column in groups), table.c.days, sa.func.sum(table.c.referrals).label("n")
        )
        .where(*_conditions(table, filters))
        .group_by(*groups, table.c.days)
    )
