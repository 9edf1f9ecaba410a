"""The centre inbox: referrals, outcomes, outbox, access log, users, login failures.

Revision ID: 0001_inbox
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001_inbox"
down_revision = None
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "referrals",
        sa.Column("referral_id", sa.String(36), primary_key=True),
        sa.Column("centre", sa.String(40), nullable=False),
        sa.Column("issued_event_id", sa.String(36), nullable=False),
        sa.Column("offence", sa.String(32), nullable=False),
        sa.Column("charged_on", sa.Date, nullable=False),
        sa.Column("municipality_code", sa.String(3)),
        sa.Column("routed_by", sa.String(32), nullable=False),
        sa.Column("contact_due_by", sa.Date, nullable=False),
        sa.Column("treatment_due_by", sa.Date, nullable=False),
        sa.Column("issued_at", TS, nullable=False),
        sa.Column("received_at", TS, nullable=False),
        sa.Column("state", sa.String(32), nullable=False),
        sa.Column("last_outcome", sa.String(32)),
        sa.Column("ended_at", TS),
        sa.Column("withdrawn_at", TS),
        sa.Column("case_ref", sa.String(64)),
        sa.Column("person_full_name", sa.String(200)),
        sa.Column("person_phone", sa.String(16)),
        sa.Column("person_email", sa.String(254)),
        sa.Column("person_street", sa.String(200)),
        sa.Column("person_postcode", sa.String(4)),
        sa.Column("person_city", sa.String(200)),
        sa.Column("person_cpr", sa.String(10)),
        sa.Column("contact_erased_at", TS),
    )
    op.create_index("ix_referrals_centre", "referrals", ["centre"])
    op.create_table(
        "withdrawal_tombstones",
        sa.Column("referral_id", sa.String(36), primary_key=True),
        sa.Column("centre", sa.String(40), nullable=False),
        sa.Column("withdrawn_at", TS, nullable=False),
    )
    op.create_table(
        "outcomes",
        sa.Column("event_id", sa.String(36), primary_key=True),
        sa.Column("referral_id", sa.String(36), sa.ForeignKey("referrals.referral_id"), nullable=True),
        sa.Column("centre", sa.String(40), nullable=False),
        sa.Column("outcome", sa.String(32), nullable=False),
        sa.Column("occurred_at", TS, nullable=False),
        sa.Column("recorded_at", TS, nullable=False),
        sa.Column("recorded_by", sa.String(100), nullable=False),
    )
    op.create_index("ix_outcomes_referral_id", "outcomes", ["referral_id"])
    op.create_table(
        "outbox",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("topic_base", sa.String(100), nullable=False),
        sa.Column("event_id", sa.String(36), nullable=False, unique=True),
        sa.Column("kafka_key", sa.String(64), nullable=False),
        sa.Column("payload", sa.Text, nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("sent_at", TS),
    )
    op.create_index("ix_outbox_sent_at", "outbox", ["sent_at"])
    op.create_table(
        "access_log",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("at", TS, nullable=False),
        sa.Column("actor", sa.String(100), nullable=False),
        sa.Column("actor_kind", sa.String(16), nullable=False),
        sa.Column("centre", sa.String(40)),
        sa.Column("referral_id", sa.String(36)),
        sa.Column("action", sa.String(64), nullable=False),
    )
    op.create_index("ix_access_log_at", "access_log", ["at"])
    op.create_index("ix_access_log_referral_id", "access_log", ["referral_id"])
    op.create_table(
        "users",
        sa.Column("username", sa.String(64), primary_key=True),
        sa.Column("centre", sa.String(40), nullable=False),
        sa.Column("password_hash", sa.String(200), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("active", sa.Boolean, nullable=False),
    )
    op.create_table(
        "login_failures",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("subject", sa.String(64), nullable=False),
        sa.Column("at", TS, nullable=False),
    )
    op.create_index("ix_login_failures_subject", "login_failures", ["subject"])


def downgrade() -> None:
    for table in ("login_failures", "users", "access_log", "outbox", "outcomes", "withdrawal_tombstones", "referrals"):
        op.drop_table(table)
