"""The one Kafka helper: topic names, client settings and topic creation.

kafka-python is used by the outbox relays (consent, centre) and admin tasks; faust
(aiokafka underneath) by the router and stats workers.  Both get their connection and
security settings from the same :class:`henvis.settings.KafkaSettings`.
"""

from __future__ import annotations

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


def security_config(settings: KafkaSettings) -> dict:
    """kafka-python style security options (also accepted by aiokafka)."""
    config: dict = {"security_protocol": settings.security_protocol}
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
        **security_config(settings),
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
        **security_config(settings),
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


def faust_broker_options(settings: KafkaSettings) -> dict:
    """Keyword arguments for ``faust.App`` to reach the same cluster."""
    import ssl

    import faust

    servers = ";".join(f"kafka://{server}" for server in settings.bootstrap_servers.split(","))
    options: dict = {"broker": servers}
    ssl_context = None
    if settings.security_protocol in ("SSL", "SASL_SSL"):
        ssl_context = ssl.create_default_context(cafile=str(settings.ssl_cafile) if settings.ssl_cafile else None)
    if settings.sasl_mechanism:
        options["broker_credentials"] = faust.SASLCredentials(
            username=settings.sasl_username,
            password=settings.sasl_password.get_secret_value() if settings.sasl_password else None,
            mechanism=settings.sasl_mechanism,
            ssl_context=ssl_context,
        )
    elif ssl_context is not None:
        options["broker_credentials"] = faust.SSLCredentials(ssl_context)
    return options


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
    wanted = {
        name: {
            "num_partitions": settings.partitions,
            "replication_factor": settings.replication_factor,
            "configs": {"retention.ms": retention[personal]},
        }
        for name, personal in topics.items()
    }
    admin = KafkaAdminClient(
        bootstrap_servers=settings.bootstrap_servers.split(","), client_id="henvis-admin", **security_config(settings)
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
