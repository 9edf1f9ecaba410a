"""Writing the daily aggregates: per-row deltas (upserts) and a rebuild from ``referrals``."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from henvis.schemas.events import Decision
from henvis.services.stats import domain
from henvis.services.stats.models import contact_days_daily, funnel_daily, referrals


def update_aggregates(conn: sa.Connection, counters: domain.CounterDeltas, days: domain.DaysDeltas) -> None:
    """Add the deltas of ``domain.aggregate_changes`` to the aggregate rows."""
    for (decided_on, municipality, offence), deltas in counters.items():
        key = {"decided_on": decided_on, "municipality_code": municipality, "offence": offence}
        _upsert(conn, funnel_daily, {**key, "decided_month": decided_on.strftime("%Y-%m")}, deltas)
    for ((decided_on, municipality, offence), days_value), delta in days.items():
        key = {"decided_on": decided_on, "municipality_code": municipality, "offence": offence, "days": days_value}
        _upsert(conn, contact_days_daily, {**key, "decided_month": decided_on.strftime("%Y-%m")}, {"referrals": delta})


def _upsert(conn: sa.Connection, table: sa.Table, key: dict, deltas: dict[str, int]) -> None:
    """Add ``deltas`` to the row of ``key``, creating it when missing (atomic per row)."""
    insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
    statement = insert(table).values(**key, **deltas)
    statement = statement.on_conflict_do_update(
        index_elements=[column.name for column in table.primary_key.columns],
        set_={name: table.c[name] + statement.excluded[name] for name in deltas},
    )
    conn.execute(statement)


def rebuild_aggregates_sql() -> list[sa.Executable]:
    """INSERT ... SELECT statements that compute the daily aggregates from ``referrals``
    (the same rules as ``domain.funnel_of``); used by the migration and ``rebuild_aggregates``."""
    r = referrals.c
    accepted = r.decision == Decision.ACCEPTED.value
    municipality = sa.func.coalesce(r.municipality_code, "")
    offence = sa.func.coalesce(r.offence, "")

    def count_if(*conditions) -> sa.ColumnElement:
        return sa.func.sum(sa.case((sa.and_(*conditions), 1), else_=0))

    not_withdrawn = r.withdrawn.is_(False)
    counts = (
        sa.select(
            r.decided_on,
            municipality,
            offence,
            r.decided_month,
            count_if(accepted),
            count_if(r.decision == Decision.DECLINED.value),
            count_if(accepted, r.withdrawn.is_(True)),
            count_if(accepted, r.first_interview.is_(True)),
            count_if(accepted, r.follow_up.is_(True)),
            count_if(accepted, not_withdrawn, r.contact_due_by.is_not(None)),
            count_if(accepted, not_withdrawn, r.contact_due_by.is_not(None), r.contacted_by_due.is_(True)),
        )
        .where(r.decision.is_not(None), r.decided_on.is_not(None))
        .group_by(r.decided_on, municipality, offence, r.decided_month)
    )
    days = (
        sa.select(r.decided_on, municipality, offence, r.days_to_first_contact, r.decided_month, sa.func.count())
        .where(accepted, r.decided_on.is_not(None), r.days_to_first_contact.is_not(None))
        .group_by(r.decided_on, municipality, offence, r.days_to_first_contact, r.decided_month)
    )
    return [
        funnel_daily.insert().from_select(
            ["decided_on", "municipality_code", "offence", "decided_month", *domain.AGGREGATE_COUNTERS], counts
        ),
        contact_days_daily.insert().from_select(
            ["decided_on", "municipality_code", "offence", "days", "decided_month", "referrals"], days
        ),
    ]
