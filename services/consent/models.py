"""SQL tables of the consent database (SQLAlchemy Core; migrations in ``migrations/``)."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
)

metadata = MetaData()

# SQLite only autoincrements an INTEGER PRIMARY KEY; PostgreSQL gets a BIGINT identity.
_BigId = BigInteger().with_variant(Integer(), "sqlite")

#: One row per accepted event: the idempotency record. No personal data but case_ref,
#: which withdrawals by referral_id need.
consent_events = Table(
    "consent_events",
    metadata,
    Column("event_id", String(36), primary_key=True),
    Column("event_type", String(32), nullable=False),
    Column("body_sha256", String(64), nullable=False),
    Column("case_ref", String(64), nullable=True),
    Column("case_pseudonym", String(64), nullable=True, index=True),
    Column("referral_id", String(36), nullable=True, unique=True),
    Column("client_name", String(64), nullable=False),
    Column("received_at", DateTime(timezone=True), nullable=False),
)

#: The transactional outbox: written with the event, published and marked sent by the relay.
consent_outbox = Table(
    "consent_outbox",
    metadata,
    Column("id", _BigId, primary_key=True, autoincrement=True),
    Column("event_id", String(36), ForeignKey("consent_events.event_id"), nullable=False, unique=True),
    Column("kafka_key", String(64), nullable=False),
    Column("payload", Text, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("sent_at", DateTime(timezone=True), nullable=True),
    Column("lease_owner", String(128), nullable=True),
    Column("lease_until", DateTime(timezone=True), nullable=True),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Index(
        "ix_consent_outbox_unsent",
        "id",
        postgresql_where="sent_at IS NULL",
        sqlite_where="sent_at IS NULL",
    ),
    Index("ix_consent_outbox_sent_at", "sent_at"),
)

#: The PostgreSQL notification channel on which an accept transaction announces a new outbox
#: row to the relays (``store.accept``, ``wakeup.PostgresWakeup``). It carries no payload.
OUTBOX_CHANNEL = "henvis_consent_outbox"

#: A single row every lease transaction updates first: it serialises leasing across relay
#: replicas on both engines (PostgreSQL row lock; SQLite's single writer lock).
outbox_lease_lock = Table(
    "consent_outbox_lease_lock",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("holder", String(128), nullable=True),
    Column("taken_at", DateTime(timezone=True), nullable=True),
)

#: The key store: one data key per referral, wrapped under a key-encryption key, released
#: only to ``grantee`` (``centre:<slug>`` or ``manual-handling``). Destroying a key empties
#: ``kek_id`` and ``wrapped_key`` and keeps the row, so an auditor sees when and why.
data_keys = Table(
    "data_keys",
    metadata,
    Column("referral_id", String(36), primary_key=True),
    Column("case_pseudonym", String(64), nullable=False, index=True),
    Column("grantee", String(64), nullable=False),
    # the centre role that handed the referral to manual handling (a repeat is recognised)
    Column("returned_by", String(64), nullable=True),
    Column("kek_id", String(32), nullable=True, index=True),
    Column("wrapped_key", String(128), nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False, index=True),
    Column("destroyed_at", DateTime(timezone=True), nullable=True),
    Column("destroyed_reason", String(16), nullable=True),
)

#: A withdrawal of a case none of whose consents has arrived yet: the next consent of the
#: case is born with its key destroyed (as the router holds such a withdrawal for it).
pending_key_withdrawals = Table(
    "pending_key_withdrawals",
    metadata,
    Column("case_pseudonym", String(64), primary_key=True),
    Column("withdrawn_at", DateTime(timezone=True), nullable=False),
)

#: Every key released, refused, handed over or destroyed: who, which referral, what.
key_access_log = Table(
    "key_access_log",
    metadata,
    Column("id", _BigId, primary_key=True, autoincrement=True),
    Column("at", DateTime(timezone=True), nullable=False, index=True),
    Column("actor", String(64), nullable=False),
    Column("role", String(64), nullable=True),
    Column("referral_id", String(36), nullable=True, index=True),
    Column("action", String(48), nullable=False),
)
