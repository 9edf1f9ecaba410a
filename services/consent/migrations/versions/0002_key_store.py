"""The key store: data keys per referral, pending withdrawals, the key access log; case pseudonyms.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("consent_events") as batch:
        batch.add_column(sa.Column("case_pseudonym", sa.String(64), nullable=True))
        batch.create_index("ix_consent_events_case_pseudonym", ["case_pseudonym"])
    op.create_table(
        "data_keys",
        sa.Column("referral_id", sa.String(36), primary_key=True),
        sa.Column("case_pseudonym", sa.String(64), nullable=False),
        sa.Column("grantee", sa.String(64), nullable=False),
        sa.Column("returned_by", sa.String(64), nullable=True),
        sa.Column("kek_id", sa.String(32), nullable=True),
        sa.Column("wrapped_key", sa.String(128), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("destroyed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("destroyed_reason", sa.String(16), nullable=True),
    )
    op.create_index("ix_data_keys_case_pseudonym", "data_keys", ["case_pseudonym"])
    op.create_index("ix_data_keys_kek_id", "data_keys", ["kek_id"])
    op.create_index("ix_data_keys_created_at", "data_keys", ["created_at"])
    op.create_table(
        "pending_key_withdrawals",
        sa.Column("case_pseudonym", sa.String(64), primary_key=True),
        sa.Column("withdrawn_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "key_access_log",
        sa.Column("id", _BigId, primary_key=True, autoincrement=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(64), nullable=False),
        sa.Column("role", sa.String(64), nullable=True),
        sa.Column("referral_id", sa.String(36), nullable=True),
        sa.Column("action", sa.String(48), nullable=False),
    )
    op.create_index("ix_key_access_log_at", "key_access_log", ["at"])
    op.create_index("ix_key_access_log_referral_id", "key_access_log", ["referral_id"])


def downgrade() -> None:
    op.drop_table("key_access_log")
    op.drop_table("pending_key_withdrawals")
    op.drop_table("data_keys")
    with op.batch_alter_table("consent_events") as batch:
        batch.drop_index("ix_consent_events_case_pseudonym")
        batch.drop_column("case_pseudonym")
