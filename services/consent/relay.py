"""The outbox relay: publishes accepted events to ``consent.decisions.v2`` in outbox order.

Each round leases a batch of unsent rows (see ``delivery.choose_lease``: several replicas
never hold rows of one case at once), sends them keyed by case_ref with the idempotent
kafka-python producer (acks=all), waits for every delivery result, marks the acknowledged
rows sent and gives the failed ones back. The producer's delivery timeout is shorter than
the lease, so a lease never runs out while its rows may still be in flight; only a crash
(SIGKILL after the broker acked, before the rows were marked) can publish a row twice,
and the router's dedupe by event_id absorbs that.

Between rounds the relay sleeps until a commit to the outbox wakes it (``wakeup.py``), or
for the poll interval at most: the poll is the safety net, not the way rows are found.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import timedelta

import structlog
from kafka import KafkaProducer
from sqlalchemy import Engine

from henvis.db import make_engine
from henvis.heap import settle_heap
from henvis.kafka import ensure_topics, henvis_topics, topic_name
from henvis.metrics import WORKER_READY, serve_metrics
from henvis.registry import Registry, load_registry
from henvis.schemas.topics import CONSENT_DECISIONS
from henvis.services.consent import delivery, outbox_store, store, store_keys
from henvis.services.consent.delivery import Settlement
from henvis.services.consent.metrics import PUBLISH_ERRORS, PUBLISHED, record_outbox_backlog
from henvis.services.consent.publisher import publish, relay_producer_config
from henvis.services.consent.settings import ConsentSettings
from henvis.services.consent.wakeup import Wakeup, wakeup_for

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


class Relay:
    """One relay replica: publishes the outbox round after round until stopped."""

    def __init__(
        self,
        settings: ConsentSettings,
        engine: Engine | None = None,
        registry: Registry | None = None,
    ):
        self.settings = settings
        # No pre-ping: it was a round trip before each of a round's two transactions, and a
        # connection the database dropped only fails that round, which is retried anyway.
        self.engine = engine or make_engine(settings.database_url, pool_pre_ping=False)
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
        rows = outbox_store.lease(
            self.engine, self.owner, self.settings.relay_batch_size, self.settings.relay_lease_seconds
        )
        if not rows:
            return RoundResult(0, 0, 0)
        published = publish(producer, self.topic, rows, timeout=self.settings.relay_lease_seconds)
        settled = delivery.settle_round([row.id for row in rows], published.outcomes)
        self._record(settled)
        if settled.unacknowledged:
            raise PublishFailed(
                f"{settled.unacknowledged} of {len(rows)} rows not acknowledged"
                f" ({type(published.error).__name__ if published.error else 'timeout'})"
            )
        return RoundResult(len(rows), len(settled.acked), 0)

    def _record(self, settled: Settlement) -> None:
        """Mark the acknowledged rows sent and give the failed ones back."""
        if settled.acked:
            outbox_store.mark_sent(self.engine, settled.acked)
            PUBLISHED.inc(len(settled.acked))
        if settled.in_doubt:
            self._drop_producer()
            PUBLISH_ERRORS.inc(len(settled.in_doubt))
        if settled.to_release:
            outbox_store.release(self.engine, settled.to_release, self.owner)
            PUBLISH_ERRORS.inc(len(settled.to_release))

    # ------------------------------------------------------------------ the loop

    def run(self, stop: threading.Event) -> None:
        """Publish until ``stop`` is set; broker or database outages are waited out.

        After a round that did not fill its batch the relay sleeps until a commit wakes it
        (``wakeup.py``) or, at the latest, for the poll interval: a commit during the round
        has woken it already, so it goes straight on; otherwise a round right away would only
        find nothing (at 50 decisions/s that empty round was a fifth of the relay's CPU,
        bench/README.md, issue 18).
        """
        wakeup = wakeup_for(self.engine.url) if self.settings.relay_wakeup else Wakeup()
        wakeup.start()
        try:
            self._publish_until(stop, wakeup)
        finally:
            wakeup.close()
            self.close()

    def _publish_until(self, stop: threading.Event, wakeup: Wakeup) -> None:
        failures = 0
        while not stop.is_set():
            wakeup.arm()  # before the round reads the outbox, so no commit after it goes unnoticed
            try:
                published = self._run_round()
            except Exception as exc:  # noqa: BLE001 - the relay must outlive any outage
                failures += 1
                stop.wait(self._recover_from(exc, failures))
                continue
            if failures:
                log.info("relay_recovered", after_failures=failures)
            failures = 0
            if published < self.settings.relay_batch_size:
                wakeup.wait(self.settings.relay_poll_interval_seconds, stop)

    def _run_round(self) -> int:
        """One round and the housekeeping after it; the number of rows published."""
        published = self.publish_round(self._ensure_producer()).published
        self._housekeeping()
        return published

    def _recover_from(self, exc: Exception, failures: int) -> float:
        """Log a failed round, drop a producer that may be broken; the seconds to wait."""
        delay = delivery.backoff_seconds(failures, self.settings.relay_max_backoff_seconds)
        log.warning(
            "relay_retrying",
            error_type=type(exc).__name__,
            consecutive_failures=failures,
            retry_in_s=round(delay, 2),
        )
        if not isinstance(exc, PublishFailed):
            self._drop_producer()
        self._safe_backlog()
        return delay

    def _ensure_producer(self) -> KafkaProducer:
        if self._producer is None:
            config = relay_producer_config(self.settings, f"henvis-consent-relay-{os.getpid()}")
            self._producer = KafkaProducer(**config)
        if not self._ready:
            created = ensure_topics(self.settings.kafka, henvis_topics(self.settings.kafka, self.registry))
            WORKER_READY.set(1)
            log.info("worker_ready", topic=self.topic, relay=self.owner, topics_created=len(created))
            self._ready = True
        return self._producer

    def _drop_producer(self) -> None:
        if self._producer is not None:
            with contextlib.suppress(Exception):  # closing a broken producer may fail too
                self._producer.close(timeout=0)
            self._producer = None

    # ------------------------------------------------------------------ housekeeping

    def _housekeeping(self) -> None:
        now = time.monotonic()
        if now - self._last_backlog >= _BACKLOG_EVERY_S:
            self._safe_backlog()
        if now - self._last_prune >= _PRUNE_EVERY_S:
            self._last_prune = now
            self._apply_retention()

    def _apply_retention(self) -> None:
        """Delete published payloads, erase old case numbers, destroy data keys past the
        backstop; log only the counts."""
        pruned = outbox_store.prune_sent(self.engine, timedelta(hours=self.settings.sent_retention_hours))
        if pruned:
            log.info("outbox_pruned", rows=pruned)
        forgotten = store.forget_case_refs(self.engine, timedelta(days=self.settings.case_ref_retention_days))
        if forgotten:
            log.info("case_refs_forgotten", rows=forgotten)
        expired = store_keys.destroy_expired(self.engine, self.settings.data_key_max_age_days)
        if expired:
            log.info("data_keys_expired", keys=expired)

    def _safe_backlog(self) -> None:
        self._last_backlog = time.monotonic()
        try:
            backlog = store.backlog(self.engine)
        except Exception:  # noqa: BLE001 - metrics must not break the loop
            return
        record_outbox_backlog(backlog)

    def close(self) -> None:
        """Close the producer (waiting up to 10 s for pending sends) and report not ready."""
        if self._producer is not None:
            with contextlib.suppress(Exception):  # a producer that cannot close is dropped all the same
                self._producer.close(timeout=10)
            self._producer = None
        WORKER_READY.set(0)


def run_relay(settings: ConsentSettings, stop: threading.Event) -> None:
    """Serve the relay's metrics (when configured) and publish until ``stop`` is set."""
    serve_metrics(settings.metrics_port)
    relay = Relay(settings)
    settle_heap()
    relay.run(stop)
