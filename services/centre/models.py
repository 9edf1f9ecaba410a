"""The centre inbox's tables (SQLAlchemy Core). Migrations in ``migrations/`` create them.

A referral's contact details are kept only sealed, in ``personal_sealed`` (as they came on
the topic, under the referral's data key); the inbox opens them for each look with the key
the consent service's key store releases to this centre, and keeps no plain copy.  Erasure
sets the column to NULL and stamps ``contact_erased_at``.  The ``person_*`` and ``case_ref``
columns hold plain details only for referrals received before sealing (erased the same way).
Every other table is pseudonymous (referral ids, centre slugs, outcome codes, user names).
"""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()

UTCDateTime = sa.DateTime(timezone=True)

referrals = sa.Table(
    "referrals",
    metadata,
    sa.Column("referral_id", sa.String(36), primary_key=True),
    sa.Column("centre", sa.String(40), nullable=False, index=True),
    sa.Column("issued_event_id", sa.String(36), nullable=False),
    sa.Column("offence", sa.String(32), nullable=False),
    sa.Column("charged_on", sa.Date, nullable=False),
    sa.Column("municipality_code", sa.String(3)),
    sa.Column("routed_by", sa.String(32), nullable=False),
    sa.Column("contact_due_by", sa.Date, nullable=False),
    sa.Column("treatment_due_by", sa.Date, nullable=False),
    sa.Column("issued_at", UTCDateTime, nullable=False),
    sa.Column("received_at", UTCDateTime, nullable=False),
    sa.Column("state", sa.String(32), nullable=False),
    sa.Column("last_outcome", sa.String(32)),
    # when the referral last became closed or withdrawn: the retention clock starts here
    sa.Column("ended_at", UTCDateTime),
    sa.Column("withdrawn_at", UTCDateTime),
    # personal data: erased (NULL) on withdrawal and by the retention purge
    sa.Column("personal_sealed", sa.Text),
    # plain contact details of referrals received before sealing (none are written now)
    sa.Column("case_ref", sa.String(64)),
    sa.Column("person_full_name", sa.String(200)),
    sa.Column("person_phone", sa.String(16)),
    sa.Column("person_email", sa.String(254)),
    sa.Column("person_street", sa.String(200)),
    sa.Column("person_postcode", sa.String(4)),
    sa.Column("person_city", sa.String(200)),
    sa.Column("person_cpr", sa.String(10)),
    sa.Column("contact_erased_at", UTCDateTime),
)

PERSONAL_COLUMNS = (
    "personal_sealed",
    "case_ref",
    "person_full_name",
    "person_phone",
    "person_email",
    "person_street",
    "person_postcode",
    "person_city",
    "person_cpr",
)

# A withdrawal that arrived before its referral: the late referral is stored already erased.
withdrawal_tombstones = sa.Table(
    "withdrawal_tombstones",
    metadata,
    sa.Column("referral_id", sa.String(36), primary_key=True),
    sa.Column("centre", sa.String(40), nullable=False),
    sa.Column("withdrawn_at", UTCDateTime, nullable=False),
)

outcomes = sa.Table(
    "outcomes",
    metadata,
    sa.Column("event_id", sa.String(36), primary_key=True),
    sa.Column("referral_id", sa.String(36), sa.ForeignKey("referrals.referral_id"), nullable=True, index=True),
    sa.Column("centre", sa.String(40), nullable=False),
    sa.Column("outcome", sa.String(32), nullable=False),
    sa.Column("occurred_at", UTCDateTime, nullable=False),
    sa.Column("recorded_at", UTCDateTime, nullable=False),
    sa.Column("recorded_by", sa.String(100), nullable=False),
)

# Events waiting to be published (referral.outcomes.v1, henvis.manual.v2), written in the
# same transaction as the change they announce; the relay marks them sent after the ack.
outbox = sa.Table(
    "outbox",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("topic_base", sa.String(100), nullable=False),
    sa.Column("event_id", sa.String(36), nullable=False, unique=True),
    sa.Column("kafka_key", sa.String(64), nullable=False),
    sa.Column("payload", sa.Text, nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("sent_at", UTCDateTime, index=True),
)

access_log = sa.Table(
    "access_log",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("at", UTCDateTime, nullable=False, index=True),
    sa.Column("actor", sa.String(100), nullable=False),
    sa.Column("actor_kind", sa.String(16), nullable=False),
    sa.Column("centre", sa.String(40)),
    sa.Column("referral_id", sa.String(36), index=True),
    sa.Column("action", sa.String(64), nullable=False),
)

users = sa.Table(
    "users",
    metadata,
    sa.Column("username", sa.String(64), primary_key=True),
    sa.Column("centre", sa.String(40), nullable=False),
    sa.Column("password_hash", sa.String(200), nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("active", sa.Boolean, nullable=False, default=True),
)

# Failed logins per (username, client address) digest, for the rate limit across replicas.
login_failures = sa.Table(
    "login_failures",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("subject", sa.String(64), nullable=False, index=True),
    sa.Column("at", UTCDateTime, nullable=False),
)
