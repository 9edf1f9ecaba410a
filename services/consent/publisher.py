"""The relay's Kafka side: the producer's config, and publishing leased rows with it.

``publish`` hands rows to kafka-python's idempotent producer, waits for every delivery
result and translates each into a ``delivery.Outcome``; the relay settles the round.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass

from kafka import KafkaProducer
from kafka.errors import KafkaError
from kafka.producer.future import FutureRecordMetadata

from henvis.kafka import producer_config
from henvis.services.consent.delivery import Outcome
from henvis.services.consent.outbox_store import LeasedRow
from henvis.services.consent.settings import ConsentSettings


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


@dataclass(frozen=True)
class Published:
    """What became of the rows handed to the producer, in lease order, and the first error.

    Fewer outcomes than rows means sending stopped early: the rest were never handed over.
    """

    outcomes: list[Outcome]
    error: Exception | None


def publish(producer: KafkaProducer, topic: str, rows: Sequence[LeasedRow], timeout: float) -> Published:
    """Send ``rows`` keyed by case_ref and wait up to ``timeout`` seconds for every result."""
    futures, send_error = _send(producer, topic, rows)
    # Rows whose futures are still pending after a failed flush are in doubt.
    with contextlib.suppress(KafkaError):
        producer.flush(timeout=timeout)
    results = [_outcome(future) for future in futures]
    delivery_error = next((error for _, error in results if error is not None), None)
    return Published([outcome for outcome, _ in results], send_error or delivery_error)


def _send(
    producer: KafkaProducer, topic: str, rows: Sequence[LeasedRow]
) -> tuple[list[FutureRecordMetadata], KafkaError | None]:
    """Hand the rows to the producer in order, stopping at the first it refuses."""
    futures = []
    for row in rows:
        try:
            futures.append(producer.send(topic, key=row.key.encode(), value=row.payload.encode()))
        except KafkaError as exc:  # e.g. no metadata within max_block_ms: the broker is away
            return futures, exc
    return futures, None


def _outcome(future: FutureRecordMetadata) -> tuple[Outcome, Exception | None]:
    """What became of one sent row, and its delivery error when it failed."""
    if not future.is_done:
        return Outcome.IN_DOUBT, None
    try:
        future.get(timeout=0)
    except Exception as exc:  # noqa: BLE001 - any delivery failure means "retry this row"
        return Outcome.FAILED, exc
    return Outcome.ACKED, None
