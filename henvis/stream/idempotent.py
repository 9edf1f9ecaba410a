"""At least once from Kafka, applied idempotently: :class:`IdempotentConsumer` (the stats worker)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping, Sequence

import structlog
from aiokafka import TopicPartition
from aiokafka.errors import KafkaError
from aiokafka.structs import ConsumerRecord

from henvis.stream.worker import PUBLISH_RETRIES, StreamOptions, StreamWorker

log = structlog.get_logger("henvis.stream")


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
