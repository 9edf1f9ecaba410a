"""Consume, decide, produce exactly once: :class:`TransactionalProcessor` (the router).

One transaction per batch and input partition writes the outputs, the state changes to the
changelog partition of the same number, and the input's next offset as one reserved record
of that changelog partition (key ``RESERVED_KEY_PREFIX``...).  The offset is not sent to the
consumer group in the transaction (``send_offsets_to_transaction`` costs two more sequential
round trips, one to the group coordinator); a partition taken restores it with the state and
starts at the greater of it and the group's committed offset.  The group's offset is copied
from the changelog after the transactions, off their path, so lag monitoring keeps working.
docs/delivery-guarantees.md says why this is exactly once.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic

import structlog
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import InvalidProducerEpoch, ProducerFenced
from aiokafka.structs import ConsumerRecord
from prometheus_client import Counter, Histogram
from structlog.contextvars import bound_contextvars

from henvis.kafka import (
    default_partition,
    stream_consumer_options,
    transactional_producer_options,
)
from henvis.stream.state import Effects, Logic, StateStore, StateView, V
from henvis.stream.worker import PUBLISH_RETRIES, StreamOptions, StreamWorker, stop_consumer

log = structlog.get_logger("henvis.stream")

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

# A partition that could not be taken (the broker is away) is tried again this often at most:
# its work waits on it, so it must not sleep long after the broker is back.
RECOVERY_MAX_BACKOFF_SECONDS = 2.0

# The group's committed offset is a lagging copy of the one in the changelog, kept for lag
# monitoring (kafka-consumer-groups, alerts): committed at most this often, off the path of
# the transactions, and given up after GROUP_COMMIT_TIMEOUT_SECONDS (aiokafka retries a
# commit for as long as the broker is away; nothing is lost by a commit that fails).
GROUP_COMMIT_SECONDS = 1.0
GROUP_COMMIT_TIMEOUT_SECONDS = 10.0

# Changelog keys starting with this byte are the processor's own, never state: no UTF-8 text
# (every state key is one, encoded) has it.  The one in use says where the input continues.
RESERVED_KEY_PREFIX = b"\xff"


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
    from its changelog (state and input offset).
    """

    def __init__(
        self,
        options: StreamOptions,
        logic: Logic[V],
        changelog_topic: str,
        tick_seconds: float | None = None,
        group_commit_seconds: float = GROUP_COMMIT_SECONDS,
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
        self.group_commit_seconds = group_commit_seconds
        #: input offsets committed in the changelog and not yet in the group (the lagging copy)
        self._group_offsets: dict[TopicPartition, int] = {}
        self._group_commit: asyncio.Task | None = None
        self._next_group_commit = time.monotonic() + group_commit_seconds
        #: the changelog key of the input offset
        self._offset_key = RESERVED_KEY_PREFIX + b"next-offset:" + self.topic.encode()

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
                stores, offsets = await self._restore(partitions)
                # A changelog written before the offset moved into it has none: the group's
                # offset, which that code committed in its transactions, is then the truth.
                # The group's offset this code commits (after the changelog's) is never ahead.
                known = {TopicPartition(self.topic, p): offset for p, offset in offsets.items()}
                group = await self._seek_to_committed(tps, known)
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
        for tp, offset in known.items():
            if offset > (group[tp] or 0):  # the lagging copy catches up even if no input comes
                self._group_offsets[tp] = offset
        log.info(
            "partitions_restored",
            topic=self.topic,
            partitions=partitions,
            state_entries=sum(len(store) for store in stores.values()),
            positions={tp.partition: self._positions[tp] for tp in tps},
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
        # Leave the group's offsets where the changelog's are: lag monitoring reads them.
        if self._group_commit is not None:
            await asyncio.gather(self._group_commit, return_exceptions=True)
        released = {tp: self._group_offsets.pop(tp) for tp in tps if tp in self._group_offsets}
        if released:
            await self._commit_group_offsets(released)
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

    async def _restore(self, partitions: list[int]) -> tuple[dict[int, StateStore[V]], dict[int, int]]:
        """Read the partitions' changelog from the start to its last stable offset: the
        state, and the input offset the last transaction wrote (where there is one)."""
        stores: dict[int, StateStore[V]] = {p: StateStore() for p in partitions}
        offsets: dict[int, int] = {}
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
                    changes: dict[str, V | None] = {}
                    for r in records:
                        if r.key is not None and r.key.startswith(RESERVED_KEY_PREFIX):
                            if r.key == self._offset_key and r.value is not None:
                                offsets[tp.partition] = int(r.value)
                            continue
                        changes[_state_key(r.key)] = None if r.value is None else decode(r.value)
                    stores[tp.partition].apply(changes)
                for tp in list(remaining):
                    # The position passes commit markers too, so it reaches the end offset.
                    if await reader.position(tp) >= ends[tp]:
                        remaining.discard(tp)
        finally:
            await stop_consumer(reader)
        return stores, offsets

    # ------------------------------------------------------------ deciding

    async def _process(self, batch: Mapping[TopicPartition, list[ConsumerRecord]]) -> None:
        for tp, records in batch.items():
            owned = await self._ready_for_more(tp.partition)
            # Records of a partition given up (or being recovered) are fetched again from its
            # changelog's offset by whoever processes it next.
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
        """One transaction: every batch's outputs and state changes, and the input offset
        (in the changelog: a group offset in the transaction costs two more round trips)."""
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
        if next_offsets:
            records.append((self.changelog_topic, owned.number, self._offset_key, str(next_offsets[-1]).encode()))
        deliveries: list[asyncio.Future] = []
        try:
            async with asyncio.timeout(COMMIT_TIMEOUT_SECONDS):
                await producer.begin_transaction()
                await self._send_batches(producer, records, deliveries)
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
            tp = TopicPartition(self.topic, owned.number)
            self._committed(tp, next_offsets[-1])
            self._group_offsets[tp] = next_offsets[-1]
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
        if (
            self._group_offsets
            and time.monotonic() >= self._next_group_commit
            and (self._group_commit is None or self._group_commit.done())
        ):
            self._next_group_commit = time.monotonic() + self.group_commit_seconds
            offsets, self._group_offsets = self._group_offsets, {}
            # Not awaited: the next transaction must not wait for it.
            self._group_commit = asyncio.create_task(self._commit_group_offsets(offsets), name="group-commit")
        if self.tick_seconds and time.monotonic() >= self._next_tick:
            self._next_tick = time.monotonic() + self.tick_seconds
            for partition in list(self._partitions):
                owned = await self._ready_for_more(partition)
                effects = self.logic.tick(partition, owned.view()) if owned is not None else None
                if owned is not None and effects:
                    self._enqueue(owned, _Decided(effects, None, 0))

    async def _commit_group_offsets(self, offsets: dict[TopicPartition, int]) -> None:
        """Copy offsets the changelog holds into the group; a failure only logs (the copy
        lags until the next commit, the changelog keeps the truth)."""
        assigned = self.consumer.assignment()
        offsets = {tp: offset for tp, offset in offsets.items() if tp in assigned}
        if not offsets:
            return
        try:
            async with asyncio.timeout(GROUP_COMMIT_TIMEOUT_SECONDS):
                await self.consumer.commit(offsets)
        except Exception as exc:  # noqa: BLE001 - monitoring's copy only: tried again next time
            log.warning("group_offset_commit_failed", topic=self.topic, error_type=type(exc).__name__)
            for tp, offset in offsets.items():
                if tp.partition in self._partitions:
                    self._group_offsets.setdefault(tp, offset)  # unless a later one is waiting

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
