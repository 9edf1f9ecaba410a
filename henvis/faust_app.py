"""The one way henvis builds and runs a faust app (router and stats workers).

Known faust sharp edges, and where they are handled, are in docs/delivery-guarantees.md;
this module handles two of them:

* **Idempotent producing.**  faust enables producer idempotence only in ``exactly_once``
  mode; :class:`IdempotentProducer` turns it on for ``at_least_once`` with ``acks=all``.
* **Committing past unhandled input.**  faust commits what its streams acked, and they ack
  messages they skipped.  An agent that iterates ``app.in_order(stream)`` handles each
  partition strictly in offset order, and :class:`PositionConsumer` commits, for its topics,
  only the offsets the agent finished (:mod:`henvis.input_positions`).
* **A consumer that stops fetching.**  Rarely, after a broker outage, a faust worker stayed a
  group member but fetched nothing more.  A worker whose input lags the broker's real end
  offset without progress for ``STUCK_SECONDS`` logs ``input_stuck`` (with its thread and task
  stacks) and exits with :data:`henvis.supervisor.EXIT_RESTART`, so its process manager
  restarts it; committed offsets are only ever handled ones, so a restart is safe.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
import traceback
from collections import defaultdict
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import faust
import structlog
from faust.transport.drivers.aiokafka import Consumer as AIOKafkaConsumer
from faust.transport.drivers.aiokafka import Producer as AIOKafkaProducer
from faust.types import TP, EventT, StreamT
from prometheus_client import Counter

from henvis.input_positions import Admission, InputPositions
from henvis.kafka import EndOffsetReader, faust_broker_options
from henvis.settings import KafkaSettings
from henvis.supervisor import EXIT_RESTART

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
# Far beyond any rewind backoff (at most 60 s) and any broker restart: a consumer this late
# with input waiting will not recover by itself.
STUCK_CHECK_SECONDS = 15.0
STUCK_SECONDS = 180.0


class IdempotentProducer(AIOKafkaProducer):
    """faust's aiokafka producer with idempotence on: a retried batch is written once."""

    def _settings_extra(self):
        return {**super()._settings_extra(), "acks": "all", "enable_idempotence": True}


class _ReadOffsets(defaultdict):
    """faust's last-read offsets, except for tracked partitions.

    faust's fetch loop drops a fetched message below the partition's last read offset; after
    a rewind, messages fetched before the seek can move that mark past the ones the seek
    re-fetches, which would then be dropped.  For tracked partitions ``in_order`` does the
    ordering and drops re-deliveries itself, so faust's mark is always "none".
    """

    def __init__(self, tracks: Callable[[TP], bool]):
        super().__init__(lambda: None)
        self._tracks = tracks

    def __getitem__(self, tp):
        return None if self._tracks(tp) else super().__getitem__(tp)


class PositionConsumer(AIOKafkaConsumer):
    """faust's aiokafka consumer that commits, for tracked topics, only handled offsets."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.positions = InputPositions()
        self._read_offset = _ReadOffsets(self.positions.tracks)

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
        # faust's plain seek sets the fetch position at once; seek_wait would also wait, in the
        # consumer thread's two-worker call queue that fetching shares, for the new position.
        await self.seek(tp, offset)

    async def rewind_stalled(self) -> None:
        tracked = [tp for tp in self.assignment() if self.positions.tracks(tp)]
        highwaters = {tp: self.highwater(tp) for tp in tracked}
        for tp, offset in self.positions.stalled(highwaters, time.monotonic(), STALL_SECONDS).items():
            await self.rewind(tp, offset, "stalled")


class HenvisApp(faust.App):
    """faust.App with an idempotent producer and in-order input (see the module docstring)."""

    def __init__(self, *args, kafka: KafkaSettings | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.timer(WATCHDOG_INTERVAL_SECONDS, name="henvis-input-watchdog")(self._rewind_stalled_input)
        self._end_offsets = EndOffsetReader(kafka, client_id=f"{self.conf.id}-watchdog") if kafka else None
        self._broker_reachable_since: float | None = None
        if self._end_offsets is not None:
            self.timer(STUCK_CHECK_SECONDS, name="henvis-stuck-input")(self._exit_if_stuck)

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

    async def _exit_if_stuck(self) -> None:
        consumer: PositionConsumer = self.consumer
        try:
            tracked = [tp for tp in consumer.assignment() if consumer.positions.tracks(tp)]
            ends = await asyncio.to_thread(self._end_offsets.read, [(tp.topic, tp.partition) for tp in tracked])
        except Exception as exc:  # noqa: BLE001 - broker away or rebalancing: not a stuck consumer
            self._broker_reachable_since = None
            log.debug("end_offsets_unavailable", error_type=type(exc).__name__)
            return
        now = time.monotonic()
        if self._broker_reachable_since is None:
            self._broker_reachable_since = now
        # After an outage, give the consumer the full time from the broker's return.
        if now - self._broker_reachable_since < STUCK_SECONDS:
            return
        end_by_tp = {tp: ends.get((tp.topic, tp.partition)) for tp in tracked}
        stuck = consumer.positions.stuck(end_by_tp, now, STUCK_SECONDS)
        if stuck:
            self._exit_stuck(consumer, stuck)

    def _exit_stuck(self, consumer: PositionConsumer, stuck: dict) -> None:
        log.error(
            "input_stuck",
            partitions=[
                {"topic": tp.topic, "partition": tp.partition, "next_offset": nxt, "end_offset": end}
                for tp, (nxt, end) in sorted(stuck.items())
            ],
            seconds_without_progress=STUCK_SECONDS,
            flow_active=consumer.flow_active,
            app_flow_active=self.flow_control.is_active(),
            paused_partitions=len(consumer._paused_partitions),
            exit_code=EXIT_RESTART,
        )
        # Stacks show code locations only, never data: evidence for why faust stopped.
        for thread_id, frame in sys._current_frames().items():
            print(f"thread {thread_id}:", file=sys.stderr)
            traceback.print_stack(frame, limit=12, file=sys.stderr)
        for task in asyncio.all_tasks():
            task.print_stack(limit=8, file=sys.stderr)
        sys.stderr.flush()
        os._exit(EXIT_RESTART)  # no graceful stop: it would wait on the same stuck machinery

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
