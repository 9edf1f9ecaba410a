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
