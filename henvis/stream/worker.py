"""The shell every stream worker shares: one aiokafka consumer (``read_committed``), its
partitions taken and given up on a rebalance, a watch for input that stopped moving, and the
process around it (:func:`run_worker`)."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
import traceback
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

import structlog
from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import KafkaError
from aiokafka.structs import ConsumerRecord
from prometheus_client import Counter, Gauge

from henvis.heap import settle_heap
from henvis.kafka import (
    EndOffsetReader,
    leave_group,
    stream_consumer_options,
)
from henvis.metrics import WORKER_READY
from henvis.settings import KafkaSettings, StreamWorkerSettings

log = structlog.get_logger("henvis.stream")


#: Exit code of a worker that found itself unable to go on and asks its process manager to
#: start it again (EX_TEMPFAIL of sysexits.h); any other exit nobody asked for is a failure.
EXIT_RESTART = 75

PARTITIONS_OWNED = Gauge("henvis_stream_partitions_owned", "Input partitions this worker processes now", ["topic"])
PUBLISH_RETRIES = Counter(
    "henvis_stream_retries_total", "Transactions or offset commits retried after a failure", ["topic"]
)

# A worker with input waiting that has not moved for this long, counted from the broker's
# return after an outage, will not recover by itself: it exits with EXIT_RESTART.
STUCK_CHECK_SECONDS = 15.0
STUCK_SECONDS = 180.0
IDLE_POLL_MS = 200


@dataclass(frozen=True)
class StreamOptions:
    """What every stream worker is configured with (from its service's settings model)."""

    kafka: KafkaSettings
    group_id: str
    topics: tuple[str, ...]
    instance_id: str | None = None
    session_timeout_seconds: float = 10.0
    batch_max_records: int = 2000
    batch_linger_ms: int = 0
    retry_max_backoff_seconds: float = 30.0

    @classmethod
    def of(cls, settings: StreamWorkerSettings, *topics: str) -> StreamOptions:
        """The options of a worker of ``topics`` configured by its service's settings."""
        return cls(
            kafka=settings.kafka,
            group_id=settings.group_id,
            topics=topics,
            instance_id=settings.instance_id,
            session_timeout_seconds=settings.session_timeout_seconds,
            batch_max_records=settings.batch_max_records,
            batch_linger_ms=settings.batch_linger_ms,
            retry_max_backoff_seconds=settings.retry_max_backoff_seconds,
        )


class StreamWorker:
    """The shell: group membership, the poll loop, rebalances, stop, readiness, watchdog.

    Subclasses say what a batch does (:meth:`_process`) and what taking and giving up
    partitions means (:meth:`_acquire`, :meth:`_release`).  Processing and rebalance
    callbacks take one lock, so partitions are never given up in the middle of a batch.
    """

    def __init__(self, options: StreamOptions):
        self.options = options
        self.topics = options.topics
        self.ready = False
        self._consumer: AIOKafkaConsumer | None = None
        self._lock = asyncio.Lock()
        self._stopping = asyncio.Event()
        #: the next input offset to process, and the next one committed
        self._positions: dict[TopicPartition, int] = {}
        self._committed_positions: dict[TopicPartition, int] = {}
        #: when a partition's committed position last moved (or it was taken)
        self._progress_at: dict[TopicPartition, float] = {}
        self._end_offsets = EndOffsetReader(options.kafka, client_id=f"{options.group_id}-watchdog")

    # ------------------------------------------------------------ running

    async def run(self) -> int:
        """Consume until :meth:`stop`; returns the exit code."""
        options = self.options
        self._consumer = AIOKafkaConsumer(
            **stream_consumer_options(
                options.kafka,
                options.group_id,
                f"{options.group_id}-consumer",
                instance_id=options.instance_id,
                session_timeout_seconds=options.session_timeout_seconds,
            )
        )
        self.consumer.subscribe(list(self.topics), listener=_Rebalance(self))
        watchdog = asyncio.create_task(self._watch_for_stuck_input(), name="stuck-input-watchdog")
        try:
            await self.consumer.start()
            while not self._stopping.is_set():
                batch = await self._poll()
                async with self._lock:
                    await self._process(batch)
                    await self._between_batches()
        finally:
            watchdog.cancel()
            await self.give_up_partitions()
            await stop_consumer(self.consumer)
            if options.instance_id:
                # A static member does not leave on close; without this its partitions would
                # wait a whole session timeout for another worker.
                await asyncio.to_thread(leave_group, options.kafka, options.group_id, options.instance_id)
            self._end_offsets.close()
        return 0

    @property
    def consumer(self) -> AIOKafkaConsumer:
        """The group member; it exists while :meth:`run` runs (aiokafka builds it in a loop)."""
        if self._consumer is None:
            raise RuntimeError("the worker is not running")
        return self._consumer

    def stop(self) -> None:
        """Finish the batch in hand, commit it, and leave the group."""
        self._stopping.set()

    async def give_up_partitions(self) -> None:
        """A rebalance begins: finish and commit what was taken, then let every partition go."""
        async with self._lock:
            await self._release(set(self._owned()))

    async def take_partitions(self, assigned: set[TopicPartition]) -> None:
        """A rebalance ended: take the partitions assigned to this worker."""
        async with self._lock:
            await self._acquire(sorted(assigned))
        self._assigned(assigned)

    async def _poll(self) -> dict[TopicPartition, list[ConsumerRecord]]:
        """Up to ``batch_max_records``; after the first record, up to ``batch_linger_ms`` more."""
        options = self.options
        try:
            batch = await self.consumer.getmany(timeout_ms=IDLE_POLL_MS, max_records=options.batch_max_records)
            count = sum(map(len, batch.values()))
            deadline = time.monotonic() + options.batch_linger_ms / 1000
            while batch and count < options.batch_max_records and (left := deadline - time.monotonic()) > 0:
                more = await self.consumer.getmany(
                    timeout_ms=int(left * 1000), max_records=options.batch_max_records - count
                )
                for tp, records in more.items():
                    batch.setdefault(tp, []).extend(records)
                    count += len(records)
            return batch
        except KafkaError as exc:
            log.warning("poll_failed", topics=list(self.topics), error_type=type(exc).__name__)
            await asyncio.sleep(1.0)
            return {}

    # ------------------------------------------------------------ subclass hooks

    async def _process(self, batch: Mapping[TopicPartition, list[ConsumerRecord]]) -> None:
        raise NotImplementedError

    async def _between_batches(self) -> None:
        """Timers and recovery that must not run while a batch is in flight."""

    def _owned(self) -> Iterable[TopicPartition]:
        return self._positions.keys()

    async def _acquire(self, tps: list[TopicPartition]) -> None:
        await self._seek_to_committed(tps)

    async def _release(self, tps: set[TopicPartition]) -> None:
        for tp in tps:
            self._positions.pop(tp, None)
            self._committed_positions.pop(tp, None)
            self._progress_at.pop(tp, None)
        self._count_owned()

    # ------------------------------------------------------------ shared steps

    async def _seek_to_committed(
        self, tps: list[TopicPartition], known: Mapping[TopicPartition, int] | None = None
    ) -> dict[TopicPartition, int | None]:
        """Start each partition at the group's committed offset, or at the offset in ``known``
        where that is greater (the log start if neither); returns the group's offsets."""
        consumer = self.consumer
        starts = await consumer.beginning_offsets(tps)
        now = time.monotonic()
        group: dict[TopicPartition, int | None] = {}
        for tp in tps:
            committed = group[tp] = await consumer.committed(tp)
            offsets = [offset for offset in (committed, (known or {}).get(tp)) if offset is not None]
            position = max(offsets) if offsets else starts[tp]
            consumer.seek(tp, position)
            self._positions[tp] = self._committed_positions[tp] = position
            self._progress_at[tp] = now
        self._count_owned()
        return group

    def _count_owned(self) -> None:
        for topic in self.topics:
            PARTITIONS_OWNED.labels(topic=topic).set(sum(tp.topic == topic for tp in self._positions))

    def _unprocessed(self, tp: TopicPartition, records: list[ConsumerRecord]) -> list[ConsumerRecord]:
        """The records of a partition this worker owns from its position on.

        A poll that ran while a rebalance took the partition (and sought it to its committed
        offset) can return records fetched before that seek; those below the position were
        processed already, and passing them again would commit an offset backwards.
        """
        position = self._positions.get(tp)
        if position is None or not records:
            return []
        if records[0].offset >= position:
            return records
        return [record for record in records if record.offset >= position]

    def _committed(self, tp: TopicPartition, next_offset: int) -> None:
        self._committed_positions[tp] = next_offset
        self._progress_at[tp] = time.monotonic()

    def _assigned(self, assigned: Iterable[TopicPartition]) -> None:
        partitions = _partition_numbers(assigned, self.topics)
        WORKER_READY.set(1)
        if not self.ready:
            self.ready = True
            log.info("worker_ready", partitions=partitions, group_id=self.options.group_id, topics=list(self.topics))
        else:
            log.info("partitions_assigned", partitions=partitions)

    # ------------------------------------------------------------ last resort

    async def _watch_for_stuck_input(self) -> None:
        """Exit with :data:`EXIT_RESTART` when input waits and nothing moves for ``STUCK_SECONDS``.

        The end offsets come from a connection of its own, not this worker's consumer, whose
        view can be stale exactly when it matters.  A restart is safe: only processed input
        is ever committed.
        """
        reachable_since: float | None = None
        while True:
            await asyncio.sleep(STUCK_CHECK_SECONDS)
            owned = sorted(self._owned())
            try:
                ends = await asyncio.to_thread(self._end_offsets.read, [(tp.topic, tp.partition) for tp in owned])
            except Exception as exc:  # noqa: BLE001 - broker away: an outage is not a stuck worker
                reachable_since = None
                log.debug("end_offsets_unavailable", error_type=type(exc).__name__)
                continue
            now = time.monotonic()
            reachable_since = now if reachable_since is None else reachable_since
            if now - reachable_since < STUCK_SECONDS:
                continue
            stuck = {
                tp: (self._committed_positions.get(tp), ends[(tp.topic, tp.partition)])
                for tp in owned
                if self._committed_positions.get(tp, 0) < ends.get((tp.topic, tp.partition), 0)
                and now - self._progress_at.get(tp, now) >= STUCK_SECONDS
            }
            if stuck:
                _exit_stuck(stuck)


async def stop_consumer(consumer: AIOKafkaConsumer) -> None:
    """``consumer.stop()``, surviving a CancelledError that aiokafka lets out of it.

    aiokafka 0.14's fetcher, on close, cancels its pending fetch tasks and awaits them; a task
    cancelled while it sleeps its retry backoff after a failed fetch (the broker has just gone)
    ends in CancelledError, and ``stop()`` passes it on although nobody cancelled the caller
    (aio-libs/aiokafka#647, open). Taken for a cancellation, it ended the router during a broker
    outage. A real cancellation of the calling task is still passed on; for the leaked one the
    consumer stays half-closed (its connections close when it is collected).
    """
    try:
        await consumer.stop()
    except asyncio.CancelledError:
        current = asyncio.current_task()
        if current is not None and current.cancelling():
            raise
        log.warning("consumer_stop_interrupted", reason="aiokafka fetch task cancelled in its retry backoff")


def _partition_numbers(tps: Iterable[TopicPartition], topics: Sequence[str]) -> list[int] | dict[str, list[int]]:
    """Assigned partitions for a log line: numbers for one topic, numbers per topic for several."""
    by_topic = {topic: sorted(tp.partition for tp in tps if tp.topic == topic) for topic in topics}
    return by_topic[topics[0]] if len(topics) == 1 else by_topic


def _exit_stuck(stuck: dict[TopicPartition, tuple[int | None, int]]) -> None:
    log.error(
        "input_stuck",
        partitions=[
            {"topic": tp.topic, "partition": tp.partition, "next_offset": nxt, "end_offset": end}
            for tp, (nxt, end) in sorted(stuck.items())
        ],
        seconds_without_progress=STUCK_SECONDS,
        exit_code=EXIT_RESTART,
    )
    # Task stacks show code locations only, never data: the evidence for why it stopped.
    for task in asyncio.all_tasks():
        task.print_stack(limit=8, file=sys.stderr)
    traceback.print_stack(file=sys.stderr)
    sys.stderr.flush()
    os._exit(EXIT_RESTART)  # a graceful stop would wait on the same stuck machinery


class _Rebalance(ConsumerRebalanceListener):
    """aiokafka's eager rebalance: everything is revoked, then the new assignment given."""

    def __init__(self, worker: StreamWorker):
        self.worker = worker

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        await self.worker.give_up_partitions()

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        await self.worker.take_partitions(assigned)


class Runnable(Protocol):
    async def run(self) -> int: ...

    def stop(self) -> None: ...


def run_worker(worker: Runnable, name: str) -> int:
    """Run ``worker`` in the foreground until SIGTERM or SIGINT; returns the exit code."""
    log_ = structlog.get_logger(f"henvis.{name}")
    settle_heap()

    async def main() -> int:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, worker.stop)
        return await worker.run()

    code = asyncio.run(main())
    log_.info(f"{name}_stopped", exit_code=code)
    return code
