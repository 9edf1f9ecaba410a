"""The stats worker's adapter: ``referral.facts.v1`` and ``referral.outcomes.v1`` into SQL.

Delivery (:class:`henvis.stream.IdempotentConsumer`):

* both topics are read ``read_committed`` (the router writes facts in transactions), each
  partition in offset order, and the offsets are committed only after the batch's events
  are in the database, so a kill or a rebalance re-delivers, never loses;
* applying is idempotent by event_id (``processed_events`` row in the same transaction as
  the referral's change), so a re-delivery changes nothing;
* the SQL runs in a thread (``asyncio.to_thread``) so the event loop keeps heartbeating;
* nothing raises out of :meth:`StatsWorker.apply`: an event that is not valid is logged by
  id/type and skipped (it can never become valid); a database error is retried with backoff
  until it works, so nothing accepted is dropped.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

import structlog
from aiokafka.structs import ConsumerRecord
from prometheus_client import Counter, Gauge
from pydantic import ValidationError
from structlog.contextvars import bound_contextvars

from henvis.kafka import topic_name
from henvis.registry import Registry
from henvis.schemas.events import ReferralFact, ReferralOutcome, parse_event
from henvis.schemas.topics import REFERRAL_FACTS, REFERRAL_OUTCOMES
from henvis.services.stats.reader import StatsReader
from henvis.services.stats.settings import StatsSettings
from henvis.services.stats.store import Filters, StatsStore
from henvis.stream import IdempotentConsumer, StreamOptions

log = structlog.get_logger("henvis.stats")

FACTS_INGESTED = Counter("henvis_stats_facts_ingested_total", "Referral facts applied to the statistics", ["decision"])
OUTCOMES_INGESTED = Counter(
    "henvis_stats_outcomes_ingested_total", "Centre outcomes applied to the statistics", ["outcome"]
)
SKIPPED = Counter("henvis_stats_events_skipped_total", "Events not applied", ["reason"])
DB_RETRIES = Counter("henvis_stats_db_retries_total", "Database writes that failed and were retried")
LAG = Gauge(
    "henvis_stats_ingest_lag_seconds",
    "Seconds between a message reaching Kafka and the statistics applying it (last message)",
    ["topic"],
)
RATE_GAUGES = {
    name: Gauge(
        f"henvis_stats_{name}",
        f"Current {name.replace('_', ' ')} over all time (suppressed cells: NaN)",
        ["municipality"],
    )
    for name in ("acceptance_rate", "first_interview_rate", "follow_up_rate")
}

_MAX_BACKOFF_SECONDS = 10.0


class StatsWorker:
    """One stats worker process: the consumer of both topics, the SQL store, the rate gauges."""

    def __init__(self, settings: StatsSettings, registry: Registry, store: StatsStore):
        self.settings = settings
        self.registry = registry
        self.store = store
        kafka = settings.kafka
        self.sources = {
            topic_name(REFERRAL_FACTS.name, kafka): "facts",
            topic_name(REFERRAL_OUTCOMES.name, kafka): "outcomes",
        }
        self.consumer = IdempotentConsumer(StreamOptions.of(settings, *self.sources), self.apply)

    async def run(self) -> int:
        gauges = asyncio.create_task(self._refresh_rate_gauges_every(self.settings.rate_gauge_interval_seconds))
        try:
            return await self.consumer.run()
        finally:
            gauges.cancel()

    def stop(self) -> None:
        self.consumer.stop()

    async def apply(self, records: Sequence[ConsumerRecord]) -> None:
        for record in records:
            with bound_contextvars(topic=record.topic, partition=record.partition, offset=record.offset):
                await self.handle(record.value, self.sources[record.topic], record.timestamp / 1000)

    async def _refresh_rate_gauges_every(self, seconds: float) -> None:
        while True:
            await asyncio.sleep(seconds)
            try:
                await asyncio.to_thread(self.refresh_rate_gauges)
            except Exception as exc:  # noqa: BLE001 - gauges are best effort; never stop the worker
                log.warning("rate_gauges_failed", error_type=type(exc).__name__)

    async def handle(self, raw: bytes | None, source: str, kafka_timestamp: float | None = None) -> bool:
        """Apply one message; True when it changed the statistics. Never raises."""
        try:
            event = parse_event(raw or b"")
        except (ValidationError, ValueError):
            SKIPPED.labels(reason="invalid_event").inc()
            log.warning("event_skipped", reason="invalid_event", topic=source)
            return False
        if not isinstance(event, (ReferralFact, ReferralOutcome)):
            SKIPPED.labels(reason="unexpected_type").inc()
            log.warning(
                "event_skipped", reason="unexpected_type", event_type=event.event_type, event_id=str(event.event_id)
            )
            return False
        applied = await self._apply_until_done(event)
        if kafka_timestamp:
            LAG.labels(topic=source).set(max(0.0, time.time() - kafka_timestamp))
        if not applied:
            SKIPPED.labels(reason="duplicate").inc()
            return False
        if isinstance(event, ReferralFact):
            FACTS_INGESTED.labels(decision=str(event.decision)).inc()
        else:
            OUTCOMES_INGESTED.labels(outcome=str(event.outcome)).inc()
        log.debug(
            "event_applied",
            event_type=event.event_type,
            event_id=str(event.event_id),
            referral_id=str(event.referral_id),
        )
        return True

    async def _apply_until_done(self, event: ReferralFact | ReferralOutcome) -> bool:
        backoff = 0.1
        while True:
            try:
                return await asyncio.to_thread(self._apply, event)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - database away or a bug: never drop, retry
                DB_RETRIES.inc()
                log.warning(
                    "apply_retry",
                    error_type=type(exc).__name__,
                    event_id=str(event.event_id),
                    backoff_seconds=round(backoff, 2),
                )
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, _MAX_BACKOFF_SECONDS)

    def _apply(self, event: ReferralFact | ReferralOutcome) -> bool:
        """Apply ``event`` to the store (in a thread); False when it was applied before."""
        if isinstance(event, ReferralFact):
            return self.store.apply_fact(event)
        return self.store.apply_outcome(event)

    def refresh_rate_gauges(self) -> None:
        """Rates per municipality (the finest label allowed), from the one protection every
        export reads (``StatsReader``), so /metrics tells no more than the API."""
        reader = StatsReader(self.store, self.registry, self.settings.suppression_threshold)
        table = reader.by_municipality(Filters())
        rows = [(row["municipality_code"], row) for row in table["rows"] if row["municipality_code"]]
        for code, row in [*rows, ("all", table["total"])]:
            for name, gauge in RATE_GAUGES.items():
                value = row[name]
                gauge.labels(municipality=code).set(float("nan") if value is None else value)
