"""The one Kafka helper: topic names, client settings and topic creation.

kafka-python is used by the outbox relays (consent, centre) and admin tasks; aiokafka by the
stream workers (router, stats: :mod:`henvis.stream`).  Both get their connection and
security settings from the same :class:`henvis.settings.KafkaSettings`.
"""

from __future__ import annotations

import struct
from functools import lru_cache

import structlog
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition

from henvis.registry import Registry
from henvis.schemas.topics import (
    CONSENT_DECISIONS,
    MANUAL_HANDLING,
    REFERRAL_FACTS,
    REFERRAL_OUTCOMES,
    centre_topic,
)
from henvis.settings import KafkaSettings

log = structlog.get_logger(__name__)

_DAY_MS = 24 * 60 * 60 * 1000
_TOPIC_ALREADY_EXISTS = 36  # Kafka protocol error codes
_NOT_AUTHORIZED = {29, 31}  # topic / cluster authorization failed


def topic_name(base: str, settings: KafkaSettings) -> str:
    """The real topic name of a catalogue topic in this deployment."""
    return f"{settings.topic_prefix}{base}"


def centre_topic_name(centre_slug: str, settings: KafkaSettings, registry: Registry | None = None) -> str:
    """The topic of one centre; the registry may give a centre a topic of its own choosing."""
    centre = registry.by_slug(centre_slug) if registry else None
    return topic_name(centre.topic_base if centre else centre_topic(centre_slug), settings)


def connection_config(settings: KafkaSettings) -> dict:
    """kafka-python connection options: security, and how soon to retry a lost broker."""
    config: dict = {
        "security_protocol": settings.security_protocol,
        # kafka-python backs off up to 30 s between reconnects: after a broker outage a relay
        # would sit idle that long with the broker back.  One second is cheap.
        "reconnect_backoff_max_ms": 1000,
    }
    if settings.sasl_mechanism:
        config["sasl_mechanism"] = settings.sasl_mechanism
        config["sasl_plain_username"] = settings.sasl_username
        config["sasl_plain_password"] = settings.sasl_password.get_secret_value() if settings.sasl_password else None
    if settings.ssl_cafile:
        config["ssl_cafile"] = str(settings.ssl_cafile)
    return config


def producer_config(settings: KafkaSettings, client_id: str) -> dict:
    """An idempotent producer that waits for all in-sync replicas (DESIGN §6.1)."""
    return {
        "bootstrap_servers": settings.bootstrap_servers.split(","),
        "client_id": client_id,
        "acks": "all",
        "enable_idempotence": True,
        "retries": 2**31 - 1,
        "max_in_flight_requests_per_connection": 5,
        "retry_backoff_ms": 200,
        "request_timeout_ms": 15_000,
        "linger_ms": 5,
        **connection_config(settings),
    }


def make_producer(settings: KafkaSettings, client_id: str) -> KafkaProducer:
    return KafkaProducer(**producer_config(settings, client_id))


def consumer_config(settings: KafkaSettings, group_id: str | None, client_id: str) -> dict:
    """A consumer that commits only what it has processed and sees only committed data."""
    return {
        "bootstrap_servers": settings.bootstrap_servers.split(","),
        "group_id": group_id,
        "client_id": client_id,
        "enable_auto_commit": False,
        "auto_offset_reset": "earliest",
        "isolation_level": "read_committed",
        **connection_config(settings),
    }


class EndOffsetReader:
    """The broker's end offsets, read on a connection of its own (not a worker's consumer,
    whose view can be stale exactly when it matters: when that consumer stopped fetching)."""

    def __init__(self, settings: KafkaSettings, client_id: str):
        self.settings = settings
        self.client_id = client_id
        self._consumer: KafkaConsumer | None = None

    def read(self, partitions: list[tuple[str, int]]) -> dict[tuple[str, int], int]:
        if self._consumer is None:
            config = consumer_config(self.settings, group_id=None, client_id=self.client_id)
            self._consumer = KafkaConsumer(**config, request_timeout_ms=10_000)
        try:
            offsets = self._consumer.end_offsets([TopicPartition(topic, p) for topic, p in partitions])
        except Exception:
            self.close()  # a fresh connection next time
            raise
        return {(tp.topic, tp.partition): offset for tp, offset in offsets.items()}

    def close(self) -> None:
        if self._consumer is not None:
            consumer, self._consumer = self._consumer, None
            consumer.close()


def default_partition(key: bytes, partitions: list[int]) -> int:
    """The partition Kafka's default partitioner gives ``key`` (murmur2, as the Java client).

    aiokafka's own murmur2 reads one byte at a time and cost a transactional router about
    6 µs a key, its largest single cost of producing; this one unpacks all the words at once.
    A property test holds the two equal.
    """
    return partitions[(_murmur2(key) & 0x7FFFFFFF) % len(partitions)]


@lru_cache(maxsize=64)
def _words(count: int) -> struct.Struct:
    return struct.Struct(f"<{count}I")


def _murmur2(data: bytes) -> int:
    mask, m = 0xFFFFFFFF, 0x5BD1E995
    length = len(data)
    h = 0x9747B28C ^ length
    for k in _words(length // 4).unpack_from(data):
        k = (k * m) & mask
        k = ((k ^ (k >> 24)) * m) & mask
        h = ((h * m) & mask) ^ k
    tail, end = length & 3, length & ~3
    if tail >= 3:
        h ^= data[end + 2] << 16
    if tail >= 2:
        h ^= data[end + 1] << 8
    if tail >= 1:
        h = ((h ^ data[end]) * m) & mask
    h = ((h ^ (h >> 13)) * m) & mask
    return h ^ (h >> 15)


def aiokafka_options(settings: KafkaSettings, client_id: str) -> dict:
    """Connection and security options for an aiokafka client of the same cluster."""
    options: dict = {
        "bootstrap_servers": settings.bootstrap_servers.split(","),
        "client_id": client_id,
        "security_protocol": settings.security_protocol,
    }
    if settings.security_protocol in ("SSL", "SASL_SSL"):
        from aiokafka.helpers import create_ssl_context

        options["ssl_context"] = create_ssl_context(cafile=str(settings.ssl_cafile) if settings.ssl_cafile else None)
    if settings.sasl_mechanism:
        options["sasl_mechanism"] = settings.sasl_mechanism
        options["sasl_plain_username"] = settings.sasl_username
        options["sasl_plain_password"] = settings.sasl_password.get_secret_value() if settings.sasl_password else None
    return options


def stream_consumer_options(
    settings: KafkaSettings,
    group_id: str | None,
    client_id: str,
    *,
    instance_id: str | None = None,
    session_timeout_seconds: float = 10.0,
) -> dict:
    """An aiokafka consumer that sees only committed data and commits nothing by itself."""
    session_ms = int(session_timeout_seconds * 1000)
    return {
        **aiokafka_options(settings, client_id),
        "group_id": group_id,
        "group_instance_id": instance_id,
        "enable_auto_commit": False,
        "auto_offset_reset": "earliest",
        "isolation_level": "read_committed",
        "session_timeout_ms": session_ms,
        "heartbeat_interval_ms": min(3000, session_ms // 3),
    }


def transactional_producer_options(
    settings: KafkaSettings, transactional_id: str, transaction_timeout_seconds: float
) -> dict:
    """An aiokafka producer whose writes become visible only when its transaction commits."""
    return {
        **aiokafka_options(settings, transactional_id),
        "transactional_id": transactional_id,
        "transaction_timeout_ms": int(transaction_timeout_seconds * 1000),
        "enable_idempotence": True,
        "acks": "all",
        "linger_ms": 0,  # a transaction's commit flushes; waiting longer only adds latency
        "max_batch_size": 256 * 1024,
        "request_timeout_ms": 15_000,
        # A transaction that starts right after the previous one committed finds its commit
        # markers still being written (CONCURRENT_TRANSACTIONS, which the broker reports to
        # this client version as NOT_ENOUGH_REPLICAS): retry in milliseconds, not 100.
        "retry_backoff_ms": 10,
    }


def leave_group(settings: KafkaSettings, group_id: str, instance_id: str) -> None:
    """Take a static member (KIP-345) out of its group now, so its partitions move at once.

    A static member never leaves by itself on close; that is what lets a restarted worker
    take its partitions back without a rebalance.  A worker that stops for good calls this.
    """
    from kafka.admin import MemberToRemove

    admin = KafkaAdminClient(
        bootstrap_servers=settings.bootstrap_servers.split(","), client_id="henvis-admin", **connection_config(settings)
    )
    try:
        admin.remove_group_members(group_id, [MemberToRemove(group_instance_id=instance_id, reason="stopped")])
    except Exception as exc:  # noqa: BLE001 - best effort: the session timeout moves them anyway
        log.warning("leave_group_failed", error_type=type(exc).__name__)
    finally:
        admin.close()


def henvis_topics(settings: KafkaSettings, registry: Registry) -> dict[str, bool]:
    """Every topic the pipeline needs, mapped to whether it holds personal data."""
    topics = {
        topic_name(CONSENT_DECISIONS.name, settings): CONSENT_DECISIONS.personal_data,
        topic_name(REFERRAL_OUTCOMES.name, settings): REFERRAL_OUTCOMES.personal_data,
        topic_name(REFERRAL_FACTS.name, settings): REFERRAL_FACTS.personal_data,
        topic_name(MANUAL_HANDLING.name, settings): MANUAL_HANDLING.personal_data,
    }
    for slug in registry.slugs:
        topics[centre_topic_name(slug, settings, registry)] = True
    return topics


def ensure_topics(settings: KafkaSettings, topics: dict[str, bool]) -> list[str]:
    """Create missing topics; those with personal data get bounded retention (DESIGN §6.5).

    Returns the names that were created.  Safe to call from every process at start: a topic
    that already exists is left as it is.  In production topics are usually created by the
    platform team with ACLs; this is what the demo, the tests and ``henvis topics create`` use.
    """
    retention = {
        True: str(settings.personal_data_retention_days * _DAY_MS),
        False: str(settings.pseudonymous_retention_days * _DAY_MS),
    }
    return _create_topics(
        settings,
        {
            name: {
                "num_partitions": settings.partitions,
                "replication_factor": settings.replication_factor,
                "configs": {"retention.ms": retention[personal]},
            }
            for name, personal in topics.items()
        },
    )


def ensure_changelog_topic(settings: KafkaSettings, name: str, partitions: int) -> None:
    """Create a worker's state changelog: compacted (the latest value per key is the state),
    kept forever, with exactly as many partitions as the input it is partitioned like."""
    _create_topics(
        settings,
        {
            name: {
                "num_partitions": partitions,
                "replication_factor": settings.replication_factor,
                "configs": {"cleanup.policy": "compact", "retention.ms": "-1"},
            }
        },
    )
    found = partition_count(settings, name)
    if found != partitions:
        raise RuntimeError(
            f"state changelog {name} has {found} partitions, its input {partitions}: they must be equal "
            "(create it again with the input's partition count)"
        )


def partition_count(settings: KafkaSettings, topic: str) -> int:
    """How many partitions ``topic`` has (0 if it does not exist)."""
    consumer = KafkaConsumer(**consumer_config(settings, group_id=None, client_id="henvis-admin"))
    try:
        return len(consumer.partitions_for_topic(topic) or ())
    finally:
        consumer.close()


def _create_topics(settings: KafkaSettings, wanted: dict[str, dict]) -> list[str]:
    admin = KafkaAdminClient(
        bootstrap_servers=settings.bootstrap_servers.split(","), client_id="henvis-admin", **connection_config(settings)
    )
    try:
        response = admin.create_topics(wanted, raise_errors=False, wait_for_metadata=True)
    finally:
        admin.close()
    created, failures, not_allowed = [], [], []
    for result in response["topics"]:
        if result["error_code"] == 0:
            created.append(result["name"])
        elif result["error_code"] in _NOT_AUTHORIZED:
            # A production login may rightly lack CREATE: the platform team owns the topics.
            not_allowed.append(result["name"])
        elif result["error_code"] != _TOPIC_ALREADY_EXISTS:
            failures.append(f"{result['name']}: {result['error_message']}")
    if failures:
        raise RuntimeError("could not create topics: " + "; ".join(failures))
    if not_allowed:
        log.warning("topics_not_created_without_permission", count=len(not_allowed))
    if created:
        log.info("topics_created", count=len(created))
    return created
