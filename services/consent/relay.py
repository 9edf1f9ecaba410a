"""The outbox relay: publishes accepted events to ``consent.decisions.v1`` in outbox order.

Each round leases a batch of unsent rows (see ``domain.choose_lease``: several replicas
never hold rows of one case at once), sends them keyed by case_ref with the idempotent
kafka-python producer (acks=all), waits for every delivery result, marks the acknowledged
rows sent and gives the failed ones back. The producer's delivery timeout is shorter than
the lease, so a lease never runs out while its rows may still be in flight; only a crash
(SIGKILL after the broker acked, before the rows were marked) can publish a row twice,
and the router's dedupe by event_id absorbs that.
"""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import timedelta

import structlog
from kafka import KafkaProducer
from kafka.errors import KafkaError
from sqlalchemy import Engine

from henvis.db import make_engine
from henvis.kafka import ensure_topics, henvis_topics, producer_config, topic_name
from henvis.metrics import WORKER_READY, serve_metrics
from henvis.registry import Registry, load_registry
from henvis.schemas.topics import CONSENT_DECISIONS
from henvis.services.consent import domain, store
from henvis.services.consent.metrics import OUTBOX_BACKLOG, OUTBOX_OLDEST_AGE, PUBLISH_ERRORS, PUBLISHED
from henvis.services.consent.settings import ConsentSettings

log = structlog.get_logger("henvis.consent.relay")

_BACKLOG_EVERY_S = 1.0
_PRUNE_EVERY_S = 600.0


class PublishFailed(RuntimeError):
    """Some rows of a batch were not acknowledged; they were given back for a retry."""


@dataclass(frozen=True)
class RoundResult:
    leased: int
    published: int
    failed: int


def relay_owner(settings: ConsentSettings) -> str:
    """This replica's lease owner name: unique per process unless configured."""
    return settings.relay_id or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


def relay_producer_config(settings: ConsentSettings, client_id: str) -> dict:
    """The shared idempotent producer config, with timeouts that fit inside one lease.

    ``max_block_ms`` (waiting for metadata) plus ``delivery_timeout_ms`` stay below the lease,
    so every future of a batch has completed, one way or the other, before the lease ends.
    """
    config = producer_config(settings.kafka, client_id)
    lease_ms = int(settings.relay_lease_seconds * 1000)
    minimum_delivery_ms = config["request_timeout_ms"] + config["linger_ms"] + 1
    config["max_block_ms"] = min(10_000, lease_ms // 6)
    config["delivery_timeout_ms"] = max(minimum_delivery_ms, lease_ms // 2)
    # Notice a returning broker within seconds, not after kafka-python's 30 s default backoff.
    config["reconnect_backoff_max_ms"] = 2_000
    config["bootstrap_timeout_ms"] = 10_000
    return config


class Relay:
    def __init__(
        self,
        settings: ConsentSettings,
        engine: Engine | None = None,
        registry: Registry | None = None,
    ):
        self.settings = settings
        self.engine = engine or make_engine(settings.database_url)
        self.registry = registry or load_registry(settings.registry_path)
        self.owner = relay_owner(settings)
        self.topic = topic_name(CONSENT_DECISIONS.name, settings.kafka)
        self._producer: KafkaProducer | None = None
        self._ready = False
        self._last_backlog = 0.0
        self._last_prune = 0.0

    # ------------------------------------------------------------------ one round

    def publish_round(self, producer: KafkaProducer) -> RoundResult:
        """Lease, send, wait for every delivery result, then mark or give back."""
        rows = store.lease(self.engine, self.owner, self.settings.relay_batch_size, self.settings.relay_lease_seconds)
        if not rows:
            return RoundResult(0, 0, 0)
        pending = []
        send_error: Exception | None = None
        for row in rows:
            try:
                future = producer.send(self.topic, key=row.key.encode(), value=row.payload.encode())
            except KafkaError as exc:  # e.g. no metadata within max_block_ms: the broker is away
                send_error = exc
                break
            pending.append((row, future))
        try:
            producer.flush(timeout=self.settings.relay_lease_seconds)
        except KafkaError:
            pass  # futures still pending are handled below
        acked, failed, in_doubt = [], [], []
        for row, future in pending:
            if not future.is_done:
                in_doubt.append(row.id)  # may still be delivered: keep the lease, let it expire
                continue
            try:
                future.get(timeout=0)
                acked.append(row.id)
            except Exception as exc:  # noqa: BLE001 - any delivery failure means "retry this row"
                send_error = send_error or exc
                failed.append(row.id)
        not_sent = [row.id for row in rows[len(pending):]]
        if acked:
            store.mark_sent(self.engine, acked)
            PUBLISHED.inc(len(acked))
        if in_doubt:
            self._drop_producer()
            PUBLISH_ERRORS.inc(len(in_doubt))
        if failed or not_sent or in_doubt:
            if failed or not_sent:
                store.release(self.engine, failed + not_sent, self.owner)
                PUBLISH_ERRORS.inc(len(failed) + len(not_sent))
            raise PublishFailed(
                f"{len(failed) + len(not_sent) + len(in_doubt)} of {len(rows)} rows not acknowledged"
                f" ({type(send_error).__name__ if send_error else 'timeout'})"
            )
        return RoundResult(len(rows), len(acked), 0)

    # ------------------------------------------------------------------ the loop

    def run(self, stop: threading.Event) -> None:
        """Publish until ``stop`` is set; broker or database outages are waited out."""
        failures = 0
        while not stop.is_set():
            try:
                producer = self._ensure_producer()
                published = self.publish_round(producer).published
                self._housekeeping()
                if failures:
                    log.info("relay_recovered", after_failures=failures)
                failures = 0
                if not published:
                    stop.wait(self.settings.relay_poll_interval_seconds)
            except Exception as exc:  # noqa: BLE001 - the relay must outlive any outage
                failures += 1
                delay = domain.backoff_seconds(failures, self.settings.relay_max_backoff_seconds)
                log.warning(
                    "relay_retrying",
                    error_type=type(exc).__name__,
                    consecutive_failures=failures,
                    retry_in_s=round(delay, 2),
                )
                if not isinstance(exc, PublishFailed):
                    self._drop_producer()
                self._safe_backlog()
                stop.wait(delay)
        self.close()

    def _ensure_producer(self) -> KafkaProducer:
        if self._producer is None:
            self._producer = KafkaProducer(**relay_producer_config(self.settings, f"henvis-consent-relay-{os.getpid()}"))
        if not self._ready:
            created = ensure_topics(self.settings.kafka, henvis_topics(self.settings.kafka, self.registry))
            WORKER_READY.set(1)
            log.info("worker_ready", topic=self.topic, relay=self.owner, topics_created=len(created))
            self._ready = True
        return self._producer

    def _drop_producer(self) -> None:
        if self._producer is not None:
            try:
                self._producer.close(timeout=0)
            except Exception:  # noqa: BLE001 - closing a broken producer may fail too
                pass
            self._producer = None

    def _housekeeping(self) -> None:
        now = time.monotonic()
        if now - self._last_backlog >= _BACKLOG_EVERY_S:
            self._safe_backlog()
        if now - self._last_prune >= _PRUNE_EVERY_S:
            self._last_prune = now
            pruned = store.prune_sent(self.engine, timedelta(hours=self.settings.sent_retention_hours))
            if pruned:
                log.info("outbox_pruned", rows=pruned)
            forgotten = store.forget_case_refs(self.engine, timedelta(days=self.settings.case_ref_retention_days))
            if forgotten:
                log.info("case_refs_forgotten", rows=forgotten)

    def _safe_backlog(self) -> None:
        self._last_backlog = time.monotonic()
        try:
            backlog = store.backlog(self.engine)
        except Exception:  # noqa: BLE001 - metrics must not break the loop
            return
        OUTBOX_BACKLOG.set(backlog.unsent)
        OUTBOX_OLDEST_AGE.set(backlog.oldest_age_seconds)

    def close(self) -> None:
        if self._producer is not None:
            try:
                self._producer.close(timeout=10)
            except Exception:  # noqa: BLE001
                pass
            self._producer = None
        WORKER_READY.set(0)


def run_relay(settings: ConsentSettings, stop: threading.Event) -> None:
    serve_metrics(settings.metrics_port)
    Relay(settings).run(stop)
