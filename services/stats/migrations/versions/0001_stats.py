"""Statistics tables: referrals (pseudonymous state per referral) and processed events.

Revision ID: 0001_stats
Revises:
Create Date: 2026-11-25
"""

import sqlalchemy as sa
from alembic import op

revision = "0001_stats"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "referrals",
        sa.Column("referral_id", sa.String(36), primary_key=True),
        sa.Column("decision", sa.String(16), nullable=True),
        sa.Column("withdrawn", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("offence", sa.String(32), nullable=True),
        sa.Column("municipality_code", sa.String(3), nullable=True),
        sa.Column("centre", sa.String(40), nullable=True),
        sa.Column("decided_on", sa.Date, nullable=True),
        sa.Column("decided_month", sa.String(7), nullable=True),
        sa.Column("contact_due_by", sa.Date, nullable=True),
        sa.Column("first_contact_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("days_to_first_contact", sa.Integer, nullable=True),
        sa.Column("contacted_by_due", sa.Boolean, nullable=True),
        sa.Column("first_interview", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("follow_up", sa.Boolean, nullable=False, server_default=sa.false()),
    )
    op.create_index("ix_referrals_decided_on", "referrals", ["decided_on"])
    op.create_index("ix_referrals_municipality_decided_on", "referrals", ["municipality_code", "decided_on"])
    op.create_index("ix_referrals_offence_decided_on", "referrals", ["offence", "decided_on"])
    op.create_table(
        "processed_events",
        sa.Column("event_id", sa.String(36), primary_key=True),
        sa.Column("event_type", sa.String(32), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("processed_events")
    op.drop_table("referrals")
