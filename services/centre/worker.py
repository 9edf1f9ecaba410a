"""``henvis centre worker``: centre topics -> inbox, and the outcome outbox -> Kafka.

Consumer: kafka-python, read_committed, manual commits. Each message is applied to the
database in its own transaction (idempotent by referral id), and the Kafka offset is
committed only after that transaction — at-least-once delivery plus idempotent writes
gives each referral exactly once in the inbox, whenever the process dies.

Relay: a second thread publishes outbox rows with the idempotent producer (acks=all) and
marks them sent only after the broker acknowledged them; it also runs the retention purge,
which destroys each purged referral's data key in the consent service's key store first.
"""

from __future__ import annotations

import signal
import threading
import time
import uuid
from datetime import UTC, datetime
from functools import partial

import structlog
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.consumer.subscription_state import ConsumerRebalanceListener
from kafka.errors import KafkaError
from kafka.structs import OffsetAndMetadata
from pydantic import ValidationError
from sqlalchemy.engine import Engine

from henvis.db import migrate
from henvis.heap import settle_heap
from henvis.kafka import centre_topic_name, consumer_config, ensure_topics, henvis_topics, make_producer, topic_name
from henvis.metrics import WORKER_READY, serve_metrics
from henvis.registry import load_registry
from henvis.schemas.events import ReferralIssued, ReferralWithdrawn, parse_event
from henvis.services.centre import domain_intake, retention, store_intake, store_outbox
from henvis.services.centre.database import make_centre_engine
from henvis.services.centre.key_store import DataKeys
from henvis.services.centre.metrics import OUTCOMES_RECORDED, REFERRALS_INGESTED, watch_inbox
from henvis.services.centre.settings import CentreSettings

log = structlog.get_logger("henvis.centre.worker")


class _ReadyOnAssignment(ConsumerRebalanceListener):
    def __init__(self, on_first_assignment):
        self._on_first = on_first_assignment
        self._done = False

    def on_partitions_assigned(self, assigned):
        if not self._done:
            self._done = True
            self._on_first(len(assigned))

    def on_partitions_revoked(self, revoked):
        pass


def apply_message(engine, topic_centre: str, value: bytes, where: str) -> str:
    """Apply one message from a centre topic to the inbox; returns what happened (for logs/metrics)."""
    try:
        event = parse_event(value)
    except (ValidationError, ValueError):
        # Unreadable or invalid: never silently dropped — a notice (without the body) to manual handling.
        _queue_invalid(engine, topic_centre, where, "message on a centre topic is not a valid event")
        return "invalid"
    if isinstance(event, ReferralIssued):
        result = store_intake.ingest_issued(engine, event, topic_centre)
        log.info("referral_received", referral_id=str(event.referral_id), centre=topic_centre, result=result)
        return result
    if isinstance(event, ReferralWithdrawn):
        result = store_intake.ingest_withdrawn(engine, event)
        if result in domain_intake.ACKNOWLEDGED:
            OUTCOMES_RECORDED.labels(topic_centre, "withdrawal_acknowledged").inc()
        log.info("referral_withdrawn", referral_id=str(event.referral_id), centre=topic_centre, result=result)
        return result
    _queue_invalid(engine, topic_centre, where, f"unexpected event type {event.event_type} on a centre topic")
    return "unexpected"


def _queue_invalid(engine, topic_centre: str, where: str, detail: str) -> None:
    now = datetime.now(UTC)
    store_outbox.queue_alone(engine, domain_intake.invalid_message(where, detail, now), now)
    log.warning("invalid_message", centre=topic_centre, where=where)


class CentreWorker:
    """The consumer (this thread) and the outbox relay with the retention purge (a second thread)."""

    def __init__(self, settings: CentreSettings, keys: DataKeys | None = None):
        self.settings = settings
        self.registry = load_registry(settings.registry_path)
        self.centres = settings.centre_slugs(self.registry)
        # The retention purge destroys each purged referral's data key in the key store.
        self.keys = keys or settings.data_keys(self.centres)
        self.topics = {centre_topic_name(slug, settings.kafka, self.registry): slug for slug in self.centres}
        self.engine = make_centre_engine(settings.database_url)
        self.stop_event = threading.Event()
        self.client_id = f"henvis-centre-{uuid.uuid4().hex[:8]}"

    # ------------------------------------------------------------------ consumer
    def run(self) -> int:
        """Consume until ``stop_event`` is set, then close everything; returns the exit code."""
        migrate(self.settings.database_url, "centre")
        ensure_topics(self.settings.kafka, henvis_topics(self.settings.kafka, self.registry))
        watch_inbox(self.engine, self.centres, self.settings.working_hours())
        serve_metrics(self.settings.metrics_port)
        relay = threading.Thread(target=self._relay_loop, name="centre-outbox-relay", daemon=True)
        relay.start()
        consumer = self._subscribed_consumer()
        try:
            self._consume(consumer)
        finally:
            consumer.close(autocommit=False)
            self.stop_event.set()
            relay.join(timeout=30)
            WORKER_READY.set(0)
            self.engine.dispose()
            log.info("worker_stopped")
        return 0

    def _subscribed_consumer(self) -> KafkaConsumer:
        consumer = KafkaConsumer(
            **consumer_config(self.settings.kafka, self.settings.consumer_group(), self.client_id),
            max_poll_records=100,
            session_timeout_ms=self.settings.consumer_session_timeout_ms,
            heartbeat_interval_ms=max(1_000, self.settings.consumer_session_timeout_ms // 3),
        )
        consumer.subscribe(topics=list(self.topics), listener=_ReadyOnAssignment(self._ready))
        return consumer

    def _consume(self, consumer: KafkaConsumer) -> None:
        while not self.stop_event.is_set():
            batch = consumer.poll(timeout_ms=500)
            for partition, records in batch.items():
                self._apply_partition(consumer, partition, records)
                if self.stop_event.is_set():
                    break

    def _ready(self, partitions: int) -> None:
        WORKER_READY.set(1)
        log.info("worker_ready", partitions=partitions, centres=len(self.centres), group=self.settings.consumer_group())

    def _apply_partition(self, consumer: KafkaConsumer, partition: TopicPartition, records) -> None:
        topic_centre = self.topics[partition.topic]
        for record in records:
            where = f"{partition.topic}/{partition.partition}@{record.offset}"
            try:
                result = apply_message(self.engine, topic_centre, record.value, where)
            except Exception as exc:  # noqa: BLE001 - database down etc.: do not commit, come back to this message
                log.error("apply_failed", where=where, error_type=type(exc).__name__)
                consumer.seek(partition, record.offset)
                self.stop_event.wait(1.0)
                return
            REFERRALS_INGESTED.labels(topic_centre, result).inc()
            # Commit only after the database transaction: a crash before this line means
            # the message comes again, and the idempotent write ignores it.
            try:
                consumer.commit({partition: OffsetAndMetadata(record.offset + 1, "", -1)})
            except KafkaError as exc:
                # Broker gone or group rebalancing: the write is done and idempotent, so the
                # worker carries on; a later commit covers this offset, or it is re-read.
                log.warning("commit_failed", where=where, error_type=type(exc).__name__)

    # ------------------------------------------------------------------ relay + purge
    def _relay_loop(self) -> None:
        producer = None
        next_purge = 0.0
        while not self.stop_event.is_set():
            try:
                if producer is None:
                    producer = make_producer(self.settings.kafka, f"{self.client_id}-relay")
                sent = relay_once(self.engine, producer, self.settings)
                if time.monotonic() >= next_purge:
                    self._purge()
                    next_purge = time.monotonic() + self.settings.purge_interval_seconds
                if not sent:
                    self.stop_event.wait(self.settings.relay_interval_seconds)
            except Exception as exc:  # noqa: BLE001 - broker or database away: retry, the outbox keeps the rows
                log.error("relay_failed", error_type=type(exc).__name__)
                self.stop_event.wait(1.0)
        if producer is not None:
            self._final_flush(producer)

    def _purge(self) -> None:
        purged = retention.purge(self.engine, self.keys, self.settings.retention_days)
        if purged:
            log.info("contact_details_purged", count=purged)

    def _final_flush(self, producer: KafkaProducer) -> None:
        try:
            relay_once(self.engine, producer, self.settings)
        except Exception as exc:  # noqa: BLE001 - stopping anyway: the outbox keeps what was not sent
            log.warning("relay_final_flush_failed", error_type=type(exc).__name__)
        producer.close(timeout=10)


def relay_once(engine: Engine, producer: KafkaProducer, settings: CentreSettings, batch: int = 500) -> int:
    """Publish pending outbox rows in order; they are marked sent only after the broker's ack."""
    sent = store_outbox.relay_batch(engine, partial(_publish_acknowledged, producer, settings), batch)
    if sent:
        log.info("outbox_relayed", count=sent)
    return sent


def _publish_acknowledged(producer: KafkaProducer, settings: CentreSettings, rows) -> None:
    """Send ``rows`` and return once the broker acknowledged every one (raises otherwise)."""
    futures = [
        producer.send(
            topic_name(row.topic_base, settings.kafka), key=row.kafka_key.encode(), value=row.payload.encode()
        )
        for row in rows
    ]
    producer.flush(timeout=30)
    for future in futures:
        future.get(timeout=30)  # raises if not acknowledged: nothing is marked sent


def run_worker(settings: CentreSettings) -> int:
    """Run the worker in the foreground until SIGTERM/SIGINT; returns the exit code."""
    worker = CentreWorker(settings)

    def _stop(signum, _frame):
        log.info("worker_stopping", signal=signum)
        worker.stop_event.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    settle_heap()
    return worker.run()
