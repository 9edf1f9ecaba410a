"""A stream worker survives aiokafka's consumer stop during a broker outage.

aiokafka lets a CancelledError out of ``AIOKafkaConsumer.stop()`` when a fetch task is
cancelled in its retry backoff after a failed fetch (aio-libs/aiokafka#647). In the broker
outage fault test that ended the router with exit code 1 while it restored its state. The
failed fetch is made here the deterministic way: a request timeout shorter than the fetch's
wait on an empty partition, and a retry backoff long enough that ``stop()`` meets the task
asleep in it.
"""

from __future__ import annotations

import asyncio
import uuid

import pytest
import structlog
from aiokafka import AIOKafkaConsumer, TopicPartition
from kafka.admin import KafkaAdminClient, NewTopic

from henvis.stream.worker import stop_consumer

pytestmark = [pytest.mark.kafka]


async def _consumer_asleep_in_fetch_backoff(bootstrap: str, topic: str) -> AIOKafkaConsumer:
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        request_timeout_ms=300,  # shorter than the fetch's wait: the fetch times out ...
        fetch_max_wait_ms=2000,
        retry_backoff_ms=30_000,  # ... and its task sleeps here when stop() comes
    )
    await consumer.start()
    partition = TopicPartition(topic, 0)
    consumer.assign([partition])
    consumer.seek(partition, 0)
    await asyncio.sleep(1.5)
    return consumer


@pytest.fixture
def empty_topic(kafka_bootstrap: str) -> str:
    name = f"t{uuid.uuid4().hex[:8]}.empty"
    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    try:
        admin.create_topics([NewTopic(name, 1, 1)])
    finally:
        admin.close()
    return name


def test_stopping_a_consumer_whose_fetch_is_in_its_retry_backoff_does_not_end_the_worker(kafka_bootstrap, empty_topic):
    async def plain_stop() -> bool:
        consumer = await _consumer_asleep_in_fetch_backoff(kafka_bootstrap, empty_topic)
        try:
            await consumer.stop()
        except asyncio.CancelledError:
            return True
        return False

    async def worker_stop() -> None:
        consumer = await _consumer_asleep_in_fetch_backoff(kafka_bootstrap, empty_topic)
        await stop_consumer(consumer)

    # The library still lets the cancellation out (if this ever fails, aiokafka fixed #647 and
    # stop_consumer can go): so the second half exercises the case that ended the router.
    assert asyncio.run(plain_stop()) is True
    with structlog.testing.capture_logs() as logs:
        asyncio.run(worker_stop())  # returns: no CancelledError reaches the worker
    assert [entry["event"] for entry in logs if entry["log_level"] == "warning"] == ["consumer_stop_interrupted"]


def test_a_real_cancellation_of_the_worker_still_reaches_it(kafka_bootstrap, empty_topic):
    async def cancelled_while_stopping() -> bool:
        consumer = await _consumer_asleep_in_fetch_backoff(kafka_bootstrap, empty_topic)
        stopping = asyncio.create_task(stop_consumer(consumer))
        await asyncio.sleep(0)  # stop_consumer is now inside consumer.stop()
        stopping.cancel()
        try:
            await stopping
        except asyncio.CancelledError:
            return True
        return False

    assert asyncio.run(cancelled_while_stopping()) is True
