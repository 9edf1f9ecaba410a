"""Router throughput vs a bare aiokafka consume->produce loop, same broker, same run.

    .venv/bin/python bench/router_throughput.py [--bootstrap HOST:PORT] [--events 5000] [--profile PREFIX]

Without ``--bootstrap`` it starts a throwaway broker (henvis.broker) for the run and stops it.

Throughput is measured the same way for every contender: from the broker timestamps of the
output records (first to last output record), so start-up and group joins are not counted.

* baseline: one aiokafka consumer in a group reads the pre-loaded input and, per batch,
  sends every record unchanged to an output topic (acks=all, idempotent), waits for the acks
  and commits. No parsing, no state.  Input is pre-loaded so the producer never limits it.
* router (1 and 2 workers): ``henvis router worker`` processes; once ready they get the same
  mix of decisions; measured on ``referral.facts.v1`` (exactly one fact per decision in the
  mix).  Prints events/s and the ratio router/baseline.  Figures are printed, never asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
import uuid
from pathlib import Path

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from kafka import KafkaConsumer, TopicPartition

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import cpu_seconds, figure  # noqa: E402

from henvis.kafka import consumer_config, ensure_topics, henvis_topics, topic_name  # noqa: E402
from henvis.registry import load_registry  # noqa: E402
from henvis.schemas.topics import CONSENT_DECISIONS, REFERRAL_FACTS  # noqa: E402
from henvis.services.router import loadgen  # noqa: E402
from henvis.settings import KafkaSettings  # noqa: E402


def output_span(settings: KafkaSettings, topic: str, expected: int, timeout: float) -> tuple[int, float]:
    """Wait until ``topic`` holds ``expected`` records; return (count, seconds first->last record)."""
    consumer = KafkaConsumer(**{**consumer_config(settings, None, "bench-reader"), "enable_auto_commit": False})
    try:
        tps = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or set()]
        deadline = time.monotonic() + timeout
        while sum(consumer.end_offsets(tps).values()) < expected:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{topic} did not reach {expected} records")
            time.sleep(0.2)
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        end = consumer.end_offsets(tps)
        first, last, count = None, None, 0
        while any(consumer.position(tp) < end[tp] for tp in tps):
            for records in consumer.poll(timeout_ms=500).values():
                for record in records:
                    count += 1
                    first = record.timestamp if first is None else min(first, record.timestamp)
                    last = record.timestamp if last is None else max(last, record.timestamp)
        return count, (last - first) / 1000.0
    finally:
        consumer.close()


async def bare_loop(settings: KafkaSettings, source: str, sink: str, expected: int) -> None:
    consumer = AIOKafkaConsumer(
        source,
        bootstrap_servers=settings.bootstrap_servers,
        group_id=f"{settings.topic_prefix}bench-bare",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap_servers, acks="all", enable_idempotence=True)
    await consumer.start()
    await producer.start()
    try:
        done = 0
        while done < expected:
            batches = await consumer.getmany(timeout_ms=500)
            futures = []
            for records in batches.values():
                for record in records:
                    futures.append(await producer.send(sink, key=record.key, value=record.value))
            for future in futures:
                await future
            done += len(futures)
            if futures:
                await consumer.commit()
    finally:
        await consumer.stop()
        await producer.stop()


def fresh_settings(bootstrap: str, partitions: int, label: str) -> KafkaSettings:
    return KafkaSettings(
        bootstrap_servers=bootstrap, topic_prefix=f"bench{uuid.uuid4().hex[:6]}-{label}.", partitions=partitions
    )


def run_baseline(bootstrap: str, partitions: int, expected: loadgen.Expected, registry) -> tuple[float, float]:
    settings = fresh_settings(bootstrap, partitions, "bare")
    ensure_topics(settings, henvis_topics(settings, registry))
    sink = topic_name("bench.passthrough.v1", settings)
    ensure_topics(settings, {sink: False})
    loadgen.produce(settings, expected.messages)
    cpu_before = time.process_time()
    asyncio.run(bare_loop(settings, topic_name(CONSENT_DECISIONS.name, settings), sink, len(expected.messages)))
    cpu_ms = (time.process_time() - cpu_before) * 1000 / len(expected.messages)
    count, seconds = output_span(settings, sink, len(expected.messages), timeout=600)
    return count / seconds, cpu_ms


def run_router(bootstrap: str, partitions: int, expected: loadgen.Expected, registry, workers: int,
               profile: str | None = None) -> tuple[float, float]:
    settings = fresh_settings(bootstrap, partitions, f"router{workers}")
    ensure_topics(settings, henvis_topics(settings, registry))
    run_dir = Path(tempfile.mkdtemp(prefix="router-bench-"))
    env = {
        "HENVIS_KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "HENVIS_KAFKA_TOPIC_PREFIX": settings.topic_prefix,
        "HENVIS_KAFKA_PARTITIONS": str(partitions),
        "HENVIS_ROUTER_SESSION_TIMEOUT_SECONDS": "6",
        "HENVIS_LOG_LEVEL": "WARNING",
    }
    processes = [
        loadgen.RouterProcess({**env, "HENVIS_ROUTER_DATA_DIR": str(run_dir / f"w{i}"), "HENVIS_LOG_LEVEL": "INFO"},
                              run_dir / f"w{i}.log", name=f"w{i}")
        for i in range(workers)
    ]
    try:
        for process in processes:
            process.start()
        deadline = time.monotonic() + 180
        # Ready, and (for several workers) each holding partitions, so no rebalance mid-run.
        while not all(p.is_ready() and p.last_assignment() for p in processes):
            if time.monotonic() > deadline:
                raise TimeoutError("router workers did not become ready")
            time.sleep(0.2)
        profiler = None
        if profile:
            from _common import py_spy

            profiler = py_spy(processes[0].process.pid, 20, profile)
        cpu_before = sum(cpu_seconds(p.process.pid) for p in processes)
        loadgen.produce(settings, expected.messages)
        count, seconds = output_span(
            settings, topic_name(REFERRAL_FACTS.name, settings), len(expected.messages), timeout=900
        )
        cpu_ms = (sum(cpu_seconds(p.process.pid) for p in processes) - cpu_before) * 1000 / len(expected.messages)
        if profiler:
            profiler.wait(60)
        return count / seconds, cpu_ms
    finally:
        for process in processes:
            process.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bootstrap", default=None, help="an existing broker; default: start a throwaway one")
    parser.add_argument("--events", type=int, default=5_000)
    parser.add_argument("--partitions", type=int, default=6)
    parser.add_argument("--profile", default=None, metavar="PREFIX",
                        help="py-spy the 1-worker run for 20 s: PREFIX.txt (collapsed stacks, see bench/README.md)")
    args = parser.parse_args(argv)

    import _common

    print(f"Router throughput   {_common.machine_line()}")
    with _common.kafka_broker(args.bootstrap) as bootstrap:
        return run(bootstrap, args)


def run(bootstrap: str, args) -> int:
    registry = load_registry()
    expected = loadgen.mixed_decisions(args.events, registry, seed=99)
    # Every decision in the mix yields exactly one fact: the router's output count to wait for.
    assert sum(expected.facts.values()) == args.events

    baseline, baseline_cpu = run_baseline(bootstrap, args.partitions, expected, registry)
    figure("bare aiokafka consume->produce", baseline, "events/s", note=f"CPU {baseline_cpu:.3f} ms/event")
    one, one_cpu = run_router(bootstrap, args.partitions, expected, registry, workers=1, profile=args.profile)
    figure("router, 1 worker", one, "events/s", baseline, note=f"CPU {one_cpu:.3f} ms/event (x{one_cpu / baseline_cpu:.0f})")
    two, two_cpu = run_router(bootstrap, args.partitions, expected, registry, workers=2)
    figure("router, 2 workers", two, "events/s", baseline, note=f"CPU {two_cpu:.3f} ms/event (x{two_cpu / baseline_cpu:.0f})")
    print(f"  ({args.events} events, {args.partitions} partitions, one broker; output broker timestamps first->last;"
          " CPU: the worker processes / the bare loop's process)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
