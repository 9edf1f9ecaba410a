"""Router throughput vs a bare aiokafka consume->produce loop, same broker, same run.

    .venv/bin/python bench/router_throughput.py [--bootstrap HOST:PORT] [--events 20000] [--rounds 2] [--profile PREFIX]

Without ``--bootstrap`` it starts a throwaway broker (henvis_dev.broker) for the run and stops it.

Throughput is measured the same way for every contender: from the broker timestamps of the
output records (first to last output record), so start-up and group joins are not counted.

* baseline: one aiokafka consumer in a group reads the pre-loaded input and, per batch,
  sends every record unchanged to an output topic (acks=all, idempotent), waits for the acks
  and commits. No parsing, no state.  Input is pre-loaded so the producer never limits it.
* router (1 and 2 workers): ``henvis router worker`` processes with every guarantee (one
  Kafka transaction per batch and partition) started on the same pre-loaded mix of
  decisions; measured on ``referral.facts.v1`` (exactly one fact per decision in the mix).
  With 2 workers the second one's join (a rebalance) falls inside the measured span.  CPU is
  the workers' CPU less what a worker uses to start and become ready (measured on its own).
  Prints events/s and the ratio router/baseline.  Figures are printed, never asserted.

Each round runs the baseline and the router again (``--rounds``, default 2), so a change of
load on the machine shows as a change between rounds rather than in the ratio.
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

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import cpu_seconds, figure, output_span

from henvis.kafka import ensure_topics, henvis_topics, topic_name
from henvis.registry import load_registry
from henvis.schemas.topics import CONSENT_DECISIONS, REFERRAL_FACTS
from henvis.settings import KafkaSettings
from henvis_dev import loadgen


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


def router_processes(
    bootstrap: str, partitions: int, settings: KafkaSettings, workers: int
) -> list[loadgen.RouterProcess]:
    run_dir = Path(tempfile.mkdtemp(prefix="router-bench-"))
    env = {
        "HENVIS_KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "HENVIS_KAFKA_TOPIC_PREFIX": settings.topic_prefix,
        "HENVIS_KAFKA_PARTITIONS": str(partitions),
        "HENVIS_ROUTER_SESSION_TIMEOUT_SECONDS": "6",
        "HENVIS_LOG_LEVEL": "INFO",
    }
    return [
        loadgen.RouterProcess({**env, "HENVIS_ROUTER_INSTANCE_ID": f"bench-w{i}"}, run_dir / f"w{i}.log", name=f"w{i}")
        for i in range(workers)
    ]


def wait_ready(processes: list[loadgen.RouterProcess]) -> None:
    deadline = time.monotonic() + 180
    while not all(p.is_ready() for p in processes):
        if time.monotonic() > deadline:
            raise TimeoutError("router workers did not become ready")
        time.sleep(0.05)


def startup_cpu(bootstrap: str, partitions: int, registry) -> float:
    """CPU seconds one router process uses to start and become ready (on empty topics)."""
    settings = fresh_settings(bootstrap, partitions, "router-idle")
    ensure_topics(settings, henvis_topics(settings, registry))
    [process] = router_processes(bootstrap, partitions, settings, 1)
    try:
        process.start()
        wait_ready([process])
        time.sleep(0.5)  # the first idle polls
        return cpu_seconds(process.process.pid)
    finally:
        process.stop()


def run_router(
    bootstrap: str, partitions: int, expected: loadgen.Expected, registry, workers: int, profile: str | None = None
) -> tuple[float, float]:
    """The input is on the topic before the workers start, as for the bare loop; CPU is the
    workers' whole CPU less what starting up costs (measured on its own, on empty topics)."""
    settings = fresh_settings(bootstrap, partitions, f"router{workers}")
    ensure_topics(settings, henvis_topics(settings, registry))
    loadgen.produce(settings, expected.messages)
    # Measured meanwhile, it also gives the new topics' partitions time to settle: a produce
    # to a partition created a moment ago can be refused (NotEnoughReplicas) and retried.
    idle_cpu = startup_cpu(bootstrap, partitions, registry)
    processes = router_processes(bootstrap, partitions, settings, workers)
    try:
        for process in processes:
            process.start()
        profiler = None
        if profile:
            from _common import py_spy

            profiler = py_spy(processes[0].process.pid, 15, profile)
        count, seconds = output_span(
            settings, topic_name(REFERRAL_FACTS.name, settings), len(expected.messages), timeout=900
        )
        busy_cpu = sum(cpu_seconds(p.process.pid) for p in processes) - workers * idle_cpu
        if profiler:
            profiler.wait(60)
        return count / seconds, busy_cpu * 1000 / len(expected.messages)
    finally:
        for process in processes:
            process.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bootstrap", default=None, help="an existing broker; default: start a throwaway one")
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=2, help="baseline and router alternate this many times")
    parser.add_argument("--partitions", type=int, default=6)
    parser.add_argument(
        "--profile",
        default=None,
        metavar="PREFIX",
        help="py-spy the 1-worker run for 20 s: PREFIX.txt (collapsed stacks, see bench/README.md)",
    )
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

    for round_ in range(1, args.rounds + 1):
        print(f"round {round_}")
        baseline, baseline_cpu = run_baseline(bootstrap, args.partitions, expected, registry)
        figure("bare aiokafka consume->produce", baseline, "events/s", note=f"CPU {baseline_cpu:.3f} ms/event")
        for workers in (1, 2):
            rate, cpu = run_router(
                bootstrap,
                args.partitions,
                expected,
                registry,
                workers,
                profile=args.profile if (workers, round_) == (1, 1) else None,
            )
            figure(
                f"router, {workers} worker{'s' if workers > 1 else ''}",
                rate,
                "events/s",
                baseline,
                note=f"CPU {cpu:.3f} ms/event (x{cpu / baseline_cpu:.0f})",
            )
    print(
        f"  ({args.events} events, {args.partitions} partitions, one broker; output broker timestamps first->last;"
        " CPU: the worker processes less their start-up / the bare loop's process)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
