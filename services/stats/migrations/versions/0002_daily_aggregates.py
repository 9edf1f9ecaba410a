"""Daily aggregates (funnel_daily, contact_days_daily) so funnel queries do not scan every referral.

Revision ID: 0002_daily_aggregates
Revises: 0001_stats
Create Date: 2026-11-25
"""

import sqlalchemy as sa
from alembic import op

revision = "0002_daily_aggregates"
down_revision = "0001_stats"
branch_labels = None
depends_on = None

COUNTERS = ("accepted", "declined", "withdrawn", "first_interviews", "follow_ups", "due_referrals", "contacted_by_due")


def upgrade() -> None:
    op.create_table(
        "funnel_daily",
        sa.Column("decided_on", sa.Date, primary_key=True),
        sa.Column("municipality_code", sa.String(3), primary_key=True),
        sa.Column("offence", sa.String(32), primary_key=True),
        sa.Column("decided_month", sa.String(7), nullable=False),
        *(sa.Column(name, sa.Integer, nullable=False, server_default="0") for name in COUNTERS),
    )
    op.create_index("ix_funnel_daily_month", "funnel_daily", ["decided_month"])
    op.create_table(
        "contact_days_daily",
        sa.Column("decided_on", sa.Date, primary_key=True),
        sa.Column("municipality_code", sa.String(3), primary_key=True),
        sa.Column("offence", sa.String(32), primary_key=True),
        sa.Column("days", sa.Integer, primary_key=True),
        sa.Column("decided_month", sa.String(7), nullable=False),
        sa.Column("referrals", sa.Integer, nullable=False, server_default="0"),
    )
    # Databases that already hold referrals get their aggregates built from them.
    from henvis.services.stats.store import rebuild_aggregates_sql

    for statement in rebuild_aggregates_sql():
        op.execute(statement)


def downgrade() -> None:
    op.drop_table("contact_days_daily")
    op.drop_table("funnel_daily")
