"""The one way henvis builds and runs a faust app (router and stats workers).

Known faust sharp edges, and where they are handled, are in docs/delivery-guarantees.md;
this module handles two of them:

* **Idempotent producing.**  faust enables producer idempotence only in ``exactly_once``
  mode; :class:`IdempotentProducer` turns it on for ``at_least_once`` with ``acks=all``.
* **Committing past unhandled input.**  faust commits what its streams acked, and they ack
  messages they skipped.  An agent that iterates ``app.in_order(stream)`` handles each
  partition strictly in offset order, and :class:`PositionConsumer` commits, for its topics,
  only the offsets the agent finished (:mod:`henvis.input_positions`).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path

import faust
import structlog
from faust.transport.drivers.aiokafka import Consumer as AIOKafkaConsumer
from faust.transport.drivers.aiokafka import Producer as AIOKafkaProducer
from faust.types import TP, EventT, StreamT
from prometheus_client import Counter

from henvis.input_positions import Admission, InputPositions
from henvis.kafka import faust_broker_options
from henvis.settings import KafkaSettings

log = structlog.get_logger("henvis.faust")

REWINDS = Counter(
    "henvis_input_rewinds_total",
    "Times a worker sought back to re-fetch input its stream skipped",
    ["topic", "cause"],
)

# How often the watchdog looks, and how long a partition may lag without progress before
# it is rewound (a rewind of a healthy but slow partition only costs a re-fetch).
WATCHDOG_INTERVAL_SECONDS = 2.0
STALL_SECONDS = 6.0


class IdempotentProducer(AIOKafkaProducer):
    """faust's aiokafka producer with idempotence on: a retried batch is written once."""

    def _settings_extra(self):
        return {**super()._settings_extra(), "acks": "all", "enable_idempotence": True}


class PositionConsumer(AIOKafkaConsumer):
    """faust's aiokafka consumer that commits, for tracked topics, only handled offsets."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.positions = InputPositions()

    async def seek_to_committed(self):
        committed = await super().seek_to_committed()
        self.positions.reset(committed, time.monotonic())
        return committed

    async def on_partitions_revoked(self, revoked: set[TP]) -> None:
        await super().on_partitions_revoked(revoked)
        self.positions.forget(revoked)

    def _filter_tps_with_pending_acks(self, topics=None):
        tps = set(super()._filter_tps_with_pending_acks(topics))
        tps.update(
            tp
            for tp in self.assignment()
            if self.positions.tracks(tp) and (topics is None or tp in topics or tp.topic in topics)
        )
        return iter(tps)

    def _new_offset(self, tp: TP) -> int | None:
        if not self.positions.tracks(tp):
            return super()._new_offset(tp)
        # faust's own ack bookkeeping is not used for this partition; keep it from growing.
        self._acked[tp].clear()
        self._acked_index[tp].clear()
        return self.positions.next_offset(tp)

    async def rewind(self, tp: TP, offset: int, cause: str) -> None:
        REWINDS.labels(topic=tp.topic, cause=cause).inc()
        log.info("input_rewound", topic=tp.topic, partition=tp.partition, offset=offset, cause=cause)
        await self.seek_wait({tp: offset})

    async def rewind_stalled(self) -> None:
        tracked = [tp for tp in self.assignment() if self.positions.tracks(tp)]
        highwaters = {tp: self.highwater(tp) for tp in tracked}
        for tp, offset in self.positions.stalled(highwaters, time.monotonic(), STALL_SECONDS).items():
            await self.rewind(tp, offset, "stalled")


class HenvisApp(faust.App):
    """faust.App with an idempotent producer and in-order input (see the module docstring)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.timer(WATCHDOG_INTERVAL_SECONDS, name="henvis-input-watchdog")(self._rewind_stalled_input)

    def _new_producer(self):
        return IdempotentProducer(self.transport, loop=self.loop, beacon=self.beacon)

    def _new_consumer(self):
        return PositionConsumer(
            self.transport,
            callback=self.topics.on_message,
            on_partitions_revoked=self._on_partitions_revoked,
            on_partitions_assigned=self._on_partitions_assigned,
            beacon=self.beacon,
            loop=self.loop,
        )

    async def _rewind_stalled_input(self) -> None:
        if self.consumer.positions.topics:
            try:
                await self.consumer.rewind_stalled()
            except Exception as exc:  # noqa: BLE001 - rebalancing or broker away: next round
                log.debug("input_watchdog_skipped", error_type=type(exc).__name__)

    async def in_order(self, stream: StreamT) -> AsyncIterator[EventT]:
        """The stream's events, each partition strictly in offset order, each once.

        The position moves on when the agent asks for the next event, i.e. after it finished
        this one; an event the agent raised on is never marked handled.
        """
        consumer: PositionConsumer = self.consumer
        positions = consumer.positions
        for topic in getattr(stream.channel, "topics", ()):
            positions.track(topic)
        async for event in stream.events():
            tp, offset = event.message.tp, event.message.offset
            admission = positions.admit(tp, offset)
            if admission is Admission.GAP:
                rewind_to = positions.rewind_for_gap(tp, time.monotonic())
                if rewind_to is not None:
                    await consumer.rewind(tp, rewind_to, "gap")
                continue
            if admission is Admission.SEEN:
                continue
            yield event
            positions.handled(tp, offset, time.monotonic())


def app_options(kafka: KafkaSettings, data_dir: Path, session_timeout_seconds: float | None = None) -> dict:
    """Settings every henvis faust app shares (docs/architecture.md, faust rules)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    options = {
        **faust_broker_options(kafka),
        "processing_guarantee": "at_least_once",
        "web_enabled": False,  # replicas on one host must not fight over a port
        "datadir": str(data_dir / "{conf.name}-data"),
        "store": "memory://",
        "topic_partitions": kafka.partitions,
        "topic_replication_factor": kafka.replication_factor,
        "producer_acks": -1,
        "consumer_auto_offset_reset": "earliest",
        "key_serializer": "raw",
        "value_serializer": "raw",
    }
    if session_timeout_seconds:
        options["broker_session_timeout"] = session_timeout_seconds
        options["broker_heartbeat_interval"] = min(3.0, session_timeout_seconds / 3)
    return options


def run_worker(app: faust.App, log_level: str, name: str) -> int:
    """Run ``app`` in the foreground until SIGTERM/SIGINT; returns the exit code."""
    log = structlog.get_logger(f"henvis.{name}")
    worker = faust.Worker(
        app,
        loglevel=log_level.upper(),
        # configure_logging owns the handlers (JSON + redaction); faust must not replace them.
        override_logging=False,
        redirect_stdouts=False,
        quiet=True,
    )
    try:
        worker.execute_from_commandline()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        log.info(f"{name}_stopped", exit_code=code)
        return code
    return 0
