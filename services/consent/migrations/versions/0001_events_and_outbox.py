"""Consent events (idempotency), the outbox and the relay lease lock.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

_BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "consent_events",
        sa.Column("event_id", sa.String(36), primary_key=True),
        sa.Column("event_type", sa.String(32), nullable=False),
        sa.Column("body_sha256", sa.String(64), nullable=False),
        sa.Column("case_ref", sa.String(64), nullable=True),
        sa.Column("referral_id", sa.String(36), nullable=True),
        sa.Column("client_name", sa.String(64), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("referral_id", name="uq_consent_events_referral_id"),
    )
    op.create_table(
        "consent_outbox",
        sa.Column("id", _BigId, primary_key=True, autoincrement=True),
        sa.Column("event_id", sa.String(36), sa.ForeignKey("consent_events.event_id"), nullable=False),
        sa.Column("kafka_key", sa.String(64), nullable=False),
        sa.Column("payload", sa.Text, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("lease_owner", sa.String(128), nullable=True),
        sa.Column("lease_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.UniqueConstraint("event_id", name="uq_consent_outbox_event_id"),
    )
    op.create_index(
        "ix_consent_outbox_unsent",
        "consent_outbox",
        ["id"],
        postgresql_where=sa.text("sent_at IS NULL"),
        sqlite_where=sa.text("sent_at IS NULL"),
    )
    op.create_index("ix_consent_outbox_sent_at", "consent_outbox", ["sent_at"])
    lock = op.create_table(
        "consent_outbox_lease_lock",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("holder", sa.String(128), nullable=True),
        sa.Column("taken_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.bulk_insert(lock, [{"id": 1, "holder": None, "taken_at": None}])


def downgrade() -> None:
    op.drop_table("consent_outbox_lease_lock")
    op.drop_index("ix_consent_outbox_sent_at", table_name="consent_outbox")
    op.drop_index("ix_consent_outbox_unsent", table_name="consent_outbox")
    op.drop_table("consent_outbox")
    op.drop_table("consent_events")
