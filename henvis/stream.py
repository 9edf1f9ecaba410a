"""The one way a henvis worker consumes a topic: aiokafka, ``read_committed``, public API only.

Two workers share one shell (:class:`StreamWorker`):

* :class:`TransactionalProcessor` (the router): consume, decide, produce, **exactly once**.
  Per batch and input partition, one Kafka transaction holds every output, the state changes
  (a compacted changelog topic partitioned like the input) and the consumed input offsets.
  It commits, or it is abandoned and the partition starts again from its committed offset
  and its changelog: a kill at any moment leaves all of a batch's effects or none.
* :class:`IdempotentConsumer` (the stats worker): consume, apply idempotently (by event id,
  in the worker's own database), then commit the input offsets.  At least once from Kafka;
  the database's dedupe makes it exactly once.

**Fencing.**  The processor has one transactional producer per assigned input partition, with
the transactional id ``<group>-<topic>-<partition>``.  A worker that takes a partition starts
that producer first: the broker aborts the previous owner's open transaction and fences its
producer, so a worker paused past its session timeout can never commit for that partition
again.  Only then does it read the partition's state and committed offset.  (aiokafka's
``send_offsets_to_transaction`` sends the group id alone, TxnOffsetCommit v0, so fencing by
consumer-group metadata, KIP-447, is not available to it: docs/delivery-guarantees.md.)

Nothing here reads or overrides an underscore-prefixed attribute of aiokafka or kafka-python
(``tests/unit/test_no_private_internals.py`` checks it).
"""

from __future__ import annotations

import asyncio
import gc
import os
import signal
import sys
import time
import traceback
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

import structlog
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import InvalidProducerEpoch, KafkaError, ProducerFenced
from aiokafka.structs import ConsumerRecord
from prometheus_client import Counter, Gauge, Histogram
from structlog.contextvars import bound_contextvars

from henvis.kafka import (
    EndOffsetReader,
    default_partition,
    leave_group,
    stream_consumer_options,
    transactional_producer_options,
)
from henvis.metrics import WORKER_READY
from henvis.settings import KafkaSettings, StreamWorkerSettings

log = structlog.get_logger("henvis.stream")

#: Exit code of a worker that found itself unable to go on and asks its process manager to
#: start it again (EX_TEMPFAIL of sysexits.h); any other exit nobody asked for is a failure.
EXIT_RESTART = 75

BATCH_RECORDS = Histogram(
    "henvis_stream_batch_records",
    "Input records per committed batch (one input partition)",
    ["topic"],
    buckets=(1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2000, 5000),
)
TRANSACTIONS = Counter("henvis_stream_transactions_total", "Kafka transactions by result", ["topic", "result"])
RESTORED_RECORDS = Counter(
    "henvis_stream_state_restored_records_total", "Changelog records read to restore state", ["topic"]
)
PARTITIONS_OWNED = Gauge("henvis_stream_partitions_owned", "Input partitions this worker processes now", ["topic"])
PUBLISH_RETRIES = Counter(
    "henvis_stream_retries_total", "Transactions or offset commits retried after a failure", ["topic"]
)

# A worker with input waiting that has not moved for this long, counted from the broker's
# return after an outage, will not recover by itself: it exits with EXIT_RESTART.
STUCK_CHECK_SECONDS = 15.0
STUCK_SECONDS = 180.0
# How long an open transaction may stay open before the broker aborts it (a crashed worker
# with nobody to take its partitions over blocks read_committed readers at most this long).
TRANSACTION_TIMEOUT_SECONDS = 60.0
# Closing a producer whose broker is away waits for its batches to time out; not forever.
CLOSE_TIMEOUT_SECONDS = 30.0
# A transaction that has not committed by then is abandoned and its partition taken again
# (a fresh producer aborts it): whatever held it (an outage, a produce the client retries
# forever), the partition moves again within this time of the broker being back.  A healthy
# commit of the largest batches takes about a second.
COMMIT_TIMEOUT_SECONDS = 15.0
IDLE_POLL_MS = 200
# A partition that could not be taken (the broker is away) is tried again this often at most:
# its work waits on it, so it must not sleep long after the broker is back.
RECOVERY_MAX_BACKOFF_SECONDS = 2.0


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
            await self.consumer.stop()
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

    async def _seek_to_committed(self, tps: list[TopicPartition]) -> None:
        """Start each partition at the group's committed offset (the log start if none)."""
        consumer = self.consumer
        starts = await consumer.beginning_offsets(tps)
        now = time.monotonic()
        for tp in tps:
            committed = await consumer.committed(tp)
            position = committed if committed is not None else starts[tp]
            consumer.seek(tp, position)
            self._positions[tp] = self._committed_positions[tp] = position
            self._progress_at[tp] = now
        self._count_owned()

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


# ---------------------------------------------------------------- exactly once


@dataclass(frozen=True)
class Output:
    """One record to produce inside the batch's transaction (``topic`` is the real name)."""

    topic: str
    key: bytes | None
    value: bytes


V = TypeVar("V")


@dataclass
class Effects(Generic[V]):
    """What a batch (or a timer) decided: outputs, state changes, and what to observe once
    they are committed (metrics, logs)."""

    outputs: list[Output] = field(default_factory=list)
    #: state key -> new value (None deletes the key)
    state: dict[str, V | None] = field(default_factory=dict)
    on_commit: Callable[[], None] | None = None

    def __bool__(self) -> bool:
        return bool(self.outputs or self.state)


class StateStore(Generic[V]):
    """One input partition's state: restored from its changelog, changed only by commits."""

    def __init__(self) -> None:
        self._values: dict[str, V] = {}

    def get(self, key: str) -> V | None:
        return self._values.get(key)

    def items(self) -> Iterable[tuple[str, V]]:
        return list(self._values.items())

    def apply(self, changes: Mapping[str, V | None]) -> None:
        for key, value in changes.items():
            if value is None:
                self._values.pop(key, None)
            else:
                self._values[key] = value

    def __len__(self) -> int:
        return len(self._values)


class StateView(Generic[V]):
    """What a decision sees: the committed state with the decided, not yet committed changes
    of earlier batches on top (they commit first, or the partition starts over)."""

    def __init__(self, store: StateStore[V], pending: Sequence[Mapping[str, V | None]]):
        self._store = store
        self._pending = pending

    def get(self, key: str) -> V | None:
        for changes in reversed(self._pending):
            if key in changes:
                return changes[key]
        return self._store.get(key)

    def items(self) -> Iterable[tuple[str, V]]:
        merged: dict[str, V | None] = dict(self._store.items())
        for changes in self._pending:
            merged.update(changes)
        return [(key, value) for key, value in merged.items() if value is not None]


class Logic(Protocol[V]):
    """What the processor asks of the application (the router's adapter)."""

    def decide(self, partition: int, records: Sequence[ConsumerRecord], state: StateView[V]) -> Effects[V]: ...

    def tick(self, partition: int, state: StateView[V]) -> Effects[V] | None: ...

    def encode_state(self, value: V) -> bytes: ...

    def decode_state(self, raw: bytes) -> V: ...


@dataclass
class _Decided(Generic[V]):
    """A batch decided and waiting to be committed."""

    effects: Effects[V]
    next_offset: int | None  # None: a timer's effects, no input consumed
    records: int


# Decided batches a partition may hold uncommitted.  While one transaction commits, the
# batches decided meanwhile queue up and then commit together in the next one: fewer, larger
# transactions (a commit writes a marker to every partition it touched).  Measured on the
# router bench: at 2 the decider waited for commits about half the time, at 4 never.
MAX_PENDING = 4


@dataclass
class _Partition(Generic[V]):
    number: int
    producer: AIOKafkaProducer
    store: StateStore[V]
    pending: list[_Decided[V]] = field(default_factory=list)
    committer: asyncio.Task | None = None
    committed: asyncio.Event = field(default_factory=asyncio.Event)

    def view(self) -> StateView[V]:
        return StateView(self.store, [decided.effects.state for decided in self.pending])


class TransactionalProcessor(StreamWorker, Generic[V]):
    """Consume, decide, produce exactly once (see the module docstring).

    Deciding and committing overlap: while a partition's transaction commits, its next batch
    is decided on the state as that transaction leaves it, and is committed next (batches
    that queued up meanwhile go together, in order, in one transaction).  If a transaction
    fails, the partition's later decisions are dropped with it and the partition starts again
    from its committed offset and state.
    """

    def __init__(
        self, options: StreamOptions, logic: Logic[V], changelog_topic: str, tick_seconds: float | None = None
    ):
        super().__init__(options)
        [self.topic] = options.topics  # the changelog is partitioned like its one input topic
        self.logic = logic
        self.changelog_topic = changelog_topic
        self.tick_seconds = tick_seconds
        self._partitions: dict[int, _Partition[V]] = {}
        #: partitions assigned to us that must be taken again: partition -> (attempt, not before)
        self._to_recover: dict[int, tuple[int, float]] = {}
        self._next_tick = time.monotonic() + (tick_seconds or 0)
        #: output topic -> its partitions, asked again after every rebalance
        self._topic_partitions: dict[str, list[int]] = {}

    def transactional_id(self, partition: int) -> str:
        return f"{self.options.group_id}-{self.topic}-{partition}"

    # ------------------------------------------------------------ partitions

    async def _acquire(self, tps: list[TopicPartition]) -> None:
        """Fence the previous owner, restore the state, start at the committed offset.

        Never raises: partitions it could not take (the broker is away) are taken later.
        """
        partitions = [tp.partition for tp in tps]
        if not partitions:
            return
        self._topic_partitions.clear()
        producers: list[AIOKafkaProducer] = []
        try:
            async with asyncio.timeout(self.options.session_timeout_seconds):
                for partition in partitions:
                    producers.append(await self._start_producer(partition))
                stores = await self._restore(partitions)
                await self._seek_to_committed(tps)
        except Exception as exc:  # noqa: BLE001 - never out of a rebalance callback: take them later
            log.warning("partitions_not_taken", topic=self.topic, partitions=partitions, error_type=type(exc).__name__)
            for producer in producers:
                await _close(producer)
            for partition in partitions:
                attempt = self._to_recover.get(partition, (0, 0.0))[0]
                delay = min(0.1 * 2**attempt, RECOVERY_MAX_BACKOFF_SECONDS)
                self._to_recover[partition] = (attempt + 1, time.monotonic() + delay)
            PUBLISH_RETRIES.labels(topic=self.topic).inc()
            return
        for partition, producer in zip(partitions, producers, strict=False):
            self._partitions[partition] = _Partition(partition, producer, stores[partition])
            self._to_recover.pop(partition, None)
        log.info(
            "partitions_restored",
            topic=self.topic,
            partitions=partitions,
            state_entries=sum(len(store) for store in stores.values()),
        )

    async def _release(self, tps: set[TopicPartition]) -> None:
        """Finish what was decided (commit it), then give the partitions up."""
        for partition in (tp.partition for tp in tps):
            owned = self._partitions.get(partition)
            if owned is not None and owned.committer is not None:
                await asyncio.gather(owned.committer, return_exceptions=True)
            self._to_recover.pop(partition, None)
            owned = self._partitions.pop(partition, None)
            if owned is not None:
                await _close(owned.producer)
        await super()._release(tps)

    def _owned(self) -> Iterable[TopicPartition]:
        return {TopicPartition(self.topic, p) for p in (*self._partitions, *self._to_recover)}

    async def _start_producer(self, partition: int) -> AIOKafkaProducer:
        # start() waits for the producer id: the broker has fenced every earlier producer with
        # this transactional id and completed (aborted) its open transaction.
        producer = AIOKafkaProducer(
            **transactional_producer_options(
                self.options.kafka, self.transactional_id(partition), TRANSACTION_TIMEOUT_SECONDS
            )
        )
        try:
            await producer.start()
        except BaseException:
            await _close(producer)
            raise
        return producer

    async def _restore(self, partitions: list[int]) -> dict[int, StateStore[V]]:
        """Read the partitions' changelog from the start to its last stable offset."""
        stores: dict[int, StateStore[V]] = {p: StateStore() for p in partitions}
        reader = AIOKafkaConsumer(
            **stream_consumer_options(self.options.kafka, None, f"{self.options.group_id}-restore")
        )
        await reader.start()
        try:
            tps = [TopicPartition(self.changelog_topic, p) for p in partitions]
            reader.assign(tps)
            ends = await reader.end_offsets(tps)
            starts = await reader.beginning_offsets(tps)
            remaining = {tp for tp in tps if ends[tp] > starts[tp]}
            for tp in remaining:
                reader.seek(tp, starts[tp])
            decode = self.logic.decode_state
            while remaining:
                batch = await reader.getmany(*remaining, timeout_ms=1000, max_records=10_000)
                for tp, records in batch.items():
                    RESTORED_RECORDS.labels(topic=self.topic).inc(len(records))
                    stores[tp.partition].apply(
                        {_state_key(r.key): None if r.value is None else decode(r.value) for r in records}
                    )
                for tp in list(remaining):
                    # The position passes commit markers too, so it reaches the end offset.
                    if await reader.position(tp) >= ends[tp]:
                        remaining.discard(tp)
        finally:
            await reader.stop()
        return stores

    # ------------------------------------------------------------ deciding

    async def _process(self, batch: Mapping[TopicPartition, list[ConsumerRecord]]) -> None:
        for tp, records in batch.items():
            owned = await self._ready_for_more(tp.partition)
            # Records of a partition given up (or being recovered) are fetched again from its
            # committed offset by whoever processes it next.
            records = self._unprocessed(tp, records) if owned is not None else []
            if owned is None or not records:
                continue
            with bound_contextvars(topic=tp.topic, partition=tp.partition, offsets=_span(records)):
                effects = self.logic.decide(tp.partition, records, owned.view())
            self._positions[tp] = records[-1].offset + 1
            self._enqueue(owned, _Decided(effects, records[-1].offset + 1, len(records)))

    async def _ready_for_more(self, partition: int) -> _Partition[V] | None:
        """The partition, once it holds fewer than MAX_PENDING uncommitted batches."""
        owned = self._partitions.get(partition)
        while owned is not None and len(owned.pending) >= MAX_PENDING:
            owned.committed.clear()
            await owned.committed.wait()
            owned = self._partitions.get(partition)
        return owned

    def _enqueue(self, owned: _Partition[V], decided: _Decided[V]) -> None:
        owned.pending.append(decided)
        if owned.committer is None or owned.committer.done():
            owned.committer = asyncio.create_task(self._commit_pending(owned), name=f"commit-{owned.number}")

    # ------------------------------------------------------------ committing

    async def _commit_pending(self, owned: _Partition[V]) -> None:
        """Commit the partition's decided batches, oldest first, until none is left."""
        try:
            while owned.pending and self._partitions.get(owned.number) is owned:
                batches = list(owned.pending)
                if not await self._commit(owned, batches):
                    return
                del owned.pending[: len(batches)]
                owned.committed.set()
        finally:
            owned.committed.set()

    async def _commit(self, owned: _Partition[V], batches: list[_Decided[V]]) -> bool:
        """One transaction: every batch's outputs and state changes, and the input offset."""
        producer = owned.producer
        encode = self.logic.encode_state
        state: dict[str, V | None] = {}
        records: list[tuple[str, int | None, bytes | None, bytes | None]] = []
        for decided in batches:
            records.extend((out.topic, None, out.key, out.value) for out in decided.effects.outputs)
            state.update(decided.effects.state)
        records.extend(
            (self.changelog_topic, owned.number, key.encode(), None if value is None else encode(value))
            for key, value in state.items()
        )
        next_offsets = [decided.next_offset for decided in batches if decided.next_offset is not None]
        deliveries: list[asyncio.Future] = []
        try:
            async with asyncio.timeout(COMMIT_TIMEOUT_SECONDS):
                await producer.begin_transaction()
                await self._send_batches(producer, records, deliveries)
                if next_offsets:
                    tp = TopicPartition(self.topic, owned.number)
                    await producer.send_offsets_to_transaction({tp: next_offsets[-1]}, self.options.group_id)
                await producer.commit_transaction()
            for delivery in deliveries:
                delivery.result()  # done after the commit's flush; raises if one was not written
        except Exception as exc:  # noqa: BLE001 - whatever failed, the partition starts over
            for delivery in deliveries:
                delivery.add_done_callback(_retrieve)  # their failure is this one: not "never retrieved"
            await self._abandon(owned, exc)
            return False
        TRANSACTIONS.labels(topic=self.topic, result="committed").inc()
        owned.store.apply(state)
        if next_offsets:
            BATCH_RECORDS.labels(topic=self.topic).observe(sum(decided.records for decided in batches))
            self._committed(TopicPartition(self.topic, owned.number), next_offsets[-1])
        with bound_contextvars(topic=self.topic, partition=owned.number):
            for decided in batches:
                if decided.effects.on_commit is not None:
                    decided.effects.on_commit()
        return True

    async def _send_batches(
        self,
        producer: AIOKafkaProducer,
        records: list[tuple[str, int | None, bytes | None, bytes | None]],
        deliveries: list[asyncio.Future],
    ) -> None:
        """Send records grouped into one batch per topic partition (a future per batch, not
        per record, added to ``deliveries``).  Keyed records go where Kafka's default
        partitioner puts them."""
        batches: dict[tuple[str, int], Any] = {}
        for topic, partition, key, value in records:
            if partition is None:
                # Every output is keyed (Output.key); the changelog's records carry a partition.
                partition = default_partition(key or b"", await self._partitions_of(producer, topic))
            batch = batches.get((topic, partition))
            if batch is None:
                batch = batches[(topic, partition)] = producer.create_batch()
            if batch.append(key=key, value=value, timestamp=None) is None:  # full: send it, start another
                deliveries.append(await producer.send_batch(batch, topic, partition=partition))
                batch = batches[(topic, partition)] = producer.create_batch()
                batch.append(key=key, value=value, timestamp=None)
        for (topic, partition), batch in batches.items():
            deliveries.append(await producer.send_batch(batch, topic, partition=partition))

    async def _partitions_of(self, producer: AIOKafkaProducer, topic: str) -> list[int]:
        partitions = self._topic_partitions.get(topic)
        if partitions is None:
            partitions = self._topic_partitions[topic] = sorted(await producer.partitions_for(topic))
        return partitions

    async def _abandon(self, owned: _Partition[V], exc: BaseException) -> None:
        """A transaction that did not commit: drop what the partition decided and take it again.

        Closing the producer leaves its transaction open at worst; the next producer with the
        same transactional id aborts it.  A fenced producer means another worker took the
        partition: wait a session timeout (our consumer learns of the rebalance by then)
        before taking it back, so a zombie does not fence the rightful owner in turn.
        """
        fenced = isinstance(exc, (ProducerFenced, InvalidProducerEpoch))
        TRANSACTIONS.labels(topic=self.topic, result="fenced" if fenced else "aborted").inc()
        log.warning(
            "transaction_abandoned",
            topic=self.topic,
            partition=owned.number,
            batches=len(owned.pending),
            error_type=type(exc).__name__,
            fenced=fenced,
        )
        if self._partitions.get(owned.number) is owned:
            del self._partitions[owned.number]
        owned.pending.clear()
        await _close(owned.producer)
        wait = self.options.session_timeout_seconds if fenced else 0.0
        self._to_recover[owned.number] = (0, time.monotonic() + wait)

    # ------------------------------------------------------------ between batches

    async def _between_batches(self) -> None:
        if self._to_recover:
            await self._recover()
        if self.tick_seconds and time.monotonic() >= self._next_tick:
            self._next_tick = time.monotonic() + self.tick_seconds
            for partition in list(self._partitions):
                owned = await self._ready_for_more(partition)
                effects = self.logic.tick(partition, owned.view()) if owned is not None else None
                if owned is not None and effects:
                    self._enqueue(owned, _Decided(effects, None, 0))

    async def _recover(self) -> None:
        now = time.monotonic()
        assigned = {tp.partition for tp in self.consumer.assignment() if tp.topic == self.topic}
        for partition, (_attempt, not_before) in list(self._to_recover.items()):
            if partition not in assigned:
                self._to_recover.pop(partition)
            elif now >= not_before:
                await self._acquire([TopicPartition(self.topic, partition)])
                if partition in self._partitions:
                    log.info("partition_recovered", topic=self.topic, partition=partition)


def _span(records: Sequence[ConsumerRecord]) -> str:
    """The offsets of a batch for a log line: ``"17-42"``."""
    return f"{records[0].offset}-{records[-1].offset}"


def _retrieve(future: asyncio.Future) -> None:
    if not future.cancelled():
        future.exception()


def _state_key(raw: bytes | None) -> str:
    text = (raw or b"").decode()
    # The router's changelog written by faust (its host until the transactional processor)
    # has JSON-encoded keys: a changelog carried over from it is read as it is.
    return text[1:-1] if len(text) >= 2 and text[0] == text[-1] == '"' else text


async def _close(producer: AIOKafkaProducer) -> None:
    try:
        await asyncio.wait_for(producer.stop(), CLOSE_TIMEOUT_SECONDS)
    except Exception as exc:  # noqa: BLE001 - a producer we give up on; its successor fences it
        log.warning("producer_close_failed", error_type=type(exc).__name__)


# ---------------------------------------------------------------- at least once, applied idempotently


class IdempotentConsumer(StreamWorker):
    """Consume, apply with ``apply(records)`` (a coroutine that must never raise and must be
    idempotent), then commit the offsets; a failed commit only means a re-delivery."""

    def __init__(self, options: StreamOptions, apply: Callable[[Sequence[ConsumerRecord]], Awaitable[None]]):
        super().__init__(options)
        self.apply = apply

    async def _process(self, batch: Mapping[TopicPartition, list[ConsumerRecord]]) -> None:
        offsets = {}
        for tp, records in batch.items():
            records = self._unprocessed(tp, records)
            if records:
                await self.apply(records)
                offsets[tp] = self._positions[tp] = records[-1].offset + 1
        if offsets:
            await self._commit_offsets(offsets)

    async def _commit_offsets(self, offsets: dict[TopicPartition, int]) -> None:
        attempt = 0
        while True:
            try:
                await self.consumer.commit(offsets)
            except KafkaError as exc:
                if not set(offsets) <= self.consumer.assignment():
                    return  # given up meanwhile: the next owner gets these records again
                log.warning("commit_retry", error_type=type(exc).__name__, attempt=attempt + 1)
                PUBLISH_RETRIES.labels(topic=",".join(self.topics)).inc()
                await asyncio.sleep(min(0.1 * 2**attempt, self.options.retry_max_backoff_seconds))
                attempt += 1
                continue
            for tp, next_offset in offsets.items():
                self._committed(tp, next_offset)
            return


# ---------------------------------------------------------------- the process


# A worker keeps decided batches (and its partitions' state) alive across several polls, so
# much of what it allocates reaches the oldest generation, and with the default thresholds
# the collector scanned the whole heap so often that it took a quarter of the router's CPU
# (bench/router_throughput.py: 0.135 against 0.10 ms per event).  Few of these objects form
# cycles; reference counting frees them.
GC_THRESHOLDS = (50_000, 20, 100)


class Runnable(Protocol):
    async def run(self) -> int: ...

    def stop(self) -> None: ...


def run_worker(worker: Runnable, name: str) -> int:
    """Run ``worker`` in the foreground until SIGTERM or SIGINT; returns the exit code."""
    log_ = structlog.get_logger(f"henvis.{name}")
    gc.set_threshold(*GC_THRESHOLDS)

    async def main() -> int:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, worker.stop)
        return await worker.run()

    code = asyncio.run(main())
    log_.info(f"{name}_stopped", exit_code=code)
    return code
