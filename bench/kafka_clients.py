"""Which Kafka client carries a transactional consume->produce loop best: aiokafka or kafka-python.

    .venv/bin/python bench/kafka_clients.py [--bootstrap HOST:PORT] [--events 20000] [--rounds 2]

Without ``--bootstrap`` it starts a throwaway broker (henvis_dev.broker) for the run and stops it.

The same pre-loaded input (decision-sized records on 6 partitions) goes through four loops,
each consuming with ``read_committed``, producing every record unchanged to an output topic,
and committing the input offsets:

* aiokafka, plain: ``acks=all``, idempotent, ``consumer.commit()`` after the batch (the ceiling);
* aiokafka, transactional: one transaction per poll of at most 2,000 records, offsets with
  ``send_offsets_to_transaction(offsets, group_id)`` (TxnOffsetCommit v0: no group metadata,
  so fencing needs a producer per input partition, as henvis.stream does);
* kafka-python, plain: as above with kafka-python;
* kafka-python, transactional: ``send_offsets_to_transaction(offsets, consumer.group_metadata())``
  (KIP-447 fencing with one producer).

Prints events/s (output broker timestamps, first to last) and the CPU of the bench process per
event, which includes kafka-python's I/O threads.  Figures are printed, never asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
import uuid
from pathlib import Path

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from kafka import KafkaConsumer, KafkaProducer
from kafka import TopicPartition as KafkaTopicPartition
from kafka.structs import OffsetAndMetadata

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import figure, machine_line, output_span

from henvis.kafka import aiokafka_options, connection_config, ensure_topics, make_producer
from henvis.settings import KafkaSettings

BATCH = 2000
VALUE = b"x" * 600  # about a decision's size


def preload(settings: KafkaSettings, topic: str, count: int) -> None:
    producer = make_producer(settings, "bench-preload")
    for index in range(count):
        producer.send(topic, key=str(uuid.uuid4()).encode(), value=VALUE + str(index).encode())
    producer.flush()
    producer.close()


async def aiokafka_loop(settings: KafkaSettings, source: str, sink: str, count: int, transactional: bool) -> None:
    group = f"{settings.topic_prefix}bench-aiokafka"
    consumer = AIOKafkaConsumer(
        source,
        **aiokafka_options(settings, "bench-consumer"),
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        isolation_level="read_committed",
    )
    extra = {"transactional_id": f"{group}-tx"} if transactional else {}
    producer = AIOKafkaProducer(
        **aiokafka_options(settings, "bench-producer"), acks="all", enable_idempotence=True, **extra
    )
    await consumer.start()
    await producer.start()
    try:
        done = 0
        while done < count:
            batches = await consumer.getmany(timeout_ms=500, max_records=BATCH)
            if not batches:
                continue
            offsets = {tp: records[-1].offset + 1 for tp, records in batches.items()}
            if transactional:
                await producer.begin_transaction()
            futures = [await producer.send(sink, r.value, key=r.key) for records in batches.values() for r in records]
            if transactional:
                await producer.send_offsets_to_transaction(offsets, group)
                await producer.commit_transaction()
            else:
                await asyncio.gather(*futures)
                await consumer.commit(offsets)
            done += len(futures)
    finally:
        await consumer.stop()
        await producer.stop()


def kafka_python_loop(settings: KafkaSettings, source: str, sink: str, count: int, transactional: bool) -> None:
    group = f"{settings.topic_prefix}bench-kafka-python"
    common = {"bootstrap_servers": settings.bootstrap_servers.split(","), **connection_config(settings)}
    consumer = KafkaConsumer(
        source,
        **common,
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        isolation_level="read_committed",
        max_poll_records=BATCH,
    )
    extra = {"transactional_id": f"{group}-tx"} if transactional else {}
    producer = KafkaProducer(**common, acks="all", enable_idempotence=True, linger_ms=0, **extra)
    if transactional:
        producer.init_transactions()
    try:
        done = 0
        while done < count:
            batches = consumer.poll(timeout_ms=500)
            if not batches:
                continue
            offsets = {
                KafkaTopicPartition(tp.topic, tp.partition): OffsetAndMetadata(records[-1].offset + 1, "", -1)
                for tp, records in batches.items()
            }
            if transactional:
                producer.begin_transaction()
            futures = [producer.send(sink, value=r.value, key=r.key) for records in batches.values() for r in records]
            if transactional:
                producer.send_offsets_to_transaction(offsets, consumer.group_metadata())
                producer.commit_transaction()
            else:
                producer.flush()
                consumer.commit(offsets)
            done += len(futures)
    finally:
        consumer.close()
        producer.close()


CONTENDERS = {
    "aiokafka, plain": lambda s, a, b, n: asyncio.run(aiokafka_loop(s, a, b, n, transactional=False)),
    "aiokafka, transactional": lambda s, a, b, n: asyncio.run(aiokafka_loop(s, a, b, n, transactional=True)),
    "kafka-python, plain": lambda s, a, b, n: kafka_python_loop(s, a, b, n, transactional=False),
    "kafka-python, transactional": lambda s, a, b, n: kafka_python_loop(s, a, b, n, transactional=True),
}


def run_one(bootstrap: str, partitions: int, events: int, loop) -> tuple[float, float]:
    settings = KafkaSettings(
        bootstrap_servers=bootstrap, topic_prefix=f"clients{uuid.uuid4().hex[:6]}.", partitions=partitions
    )
    source, sink = f"{settings.topic_prefix}in", f"{settings.topic_prefix}out"
    ensure_topics(settings, {source: False, sink: False})
    preload(settings, source, events)
    cpu = time.process_time()
    loop(settings, source, sink, events)
    cpu_ms = (time.process_time() - cpu) * 1000 / events
    count, seconds = output_span(settings, sink, events, timeout=600)
    return count / seconds, cpu_ms


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bootstrap", default=None, help="an existing broker; default: start a throwaway one")
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--partitions", type=int, default=6)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args(argv)

    import _common

    print(f"Kafka clients   {machine_line()}")
    with _common.kafka_broker(args.bootstrap) as bootstrap:
        for round_ in range(1, args.rounds + 1):
            print(f"round {round_}")
            baseline = None
            for label, loop in CONTENDERS.items():
                rate, cpu_ms = run_one(bootstrap, args.partitions, args.events, loop)
                baseline = baseline or rate
                figure(
                    label, rate, "events/s", None if rate == baseline else baseline, note=f"CPU {cpu_ms:.3f} ms/event"
                )
    print(
        f"  ({args.events} records of ~600 bytes, {args.partitions} partitions, batches of <= {BATCH}; ratio against aiokafka plain)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
