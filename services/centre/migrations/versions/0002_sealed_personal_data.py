"""Referrals keep their personal data sealed under the referral's data key, never in plain text.

Revision ID: 0002_sealed_personal_data
Revises: 0001_inbox
"""

import sqlalchemy as sa
from alembic import op

revision = "0002_sealed_personal_data"
down_revision = "0001_inbox"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("referrals") as batch:
        batch.add_column(sa.Column("personal_sealed", sa.Text, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("referrals") as batch:
        batch.drop_column("personal_sealed")
