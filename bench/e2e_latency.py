"""End-to-end latency: ``POST /v1/decisions`` answered -> referral readable on the centre topic.

    .venv/bin/python bench/e2e_latency.py [--bootstrap HOST:PORT] [--rates 50,500] [--seconds 15]
                                          [--engines sqlite,postgresql]

Runs the real parts (``consent serve``, ``consent relay``, ``router worker``; the demo's
settings, the consent database on SQLite and, with ``--postgres-url`` /
``HENVIS_TEST_POSTGRES_URL``, on a scratch PostgreSQL database) under the supervisor, offers decisions at a steady rate (open loop: the
n-th request starts at start + n/rate, at most ``--in-flight`` at once, so an API that cannot
keep up shows as a lower achieved rate, never as hidden queueing in the client) and a
separate watcher process timestamps each referral's arrival on the eleven centre topics.

Baseline, same run and broker, same rate and record size: a bare aiokafka producer
(acks=all, idempotent) -> the same watcher; latency from ``send()`` to arrival.  Second
baseline, the pipeline's Kafka shape with no henvis code: the same produce, then a bare loop
moving each batch to a second topic in one Kafka transaction with its input offset (as the
router does), read by the watcher: what the two hops cost before any database, HTTP or
henvis code.

Encryption (issue 13), same run and rate: what crypto-shredding puts on a decision's path,
timed per decision: sealing at the consent API (a fresh data key, the personal data sealed,
the key wrapped under the KEK; measured in this process on the same bodies), and a centre's
first look (its data key released by the running consent API over HTTP with the centre's
token, the blob opened). "Without encryption" is the measured pipeline latency minus the
sealing; there is no plaintext mode to run instead.
Prints p50/p95/p99 per rate and the ratios; asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import os
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common
import httpx
from _common import ArrivalWatcher, Pipeline, decision, figure, percentile, title
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from henvis.kafka import ensure_topics, topic_name
from henvis.registry import load_registry
from henvis.schemas.events import parse_decision, referral_id_for
from henvis.schemas.topics import CONSENT_DECISIONS
from henvis.services.consent import domain, domain_keys
from henvis.shredding import CasePseudonyms, KeyEncryptionKeys, decode_secret, new_data_key, open_personal_data

# A referral.issued on the wire is about this size; the bare baseline sends as much.
REFERRAL_BYTES = 620


async def paced(rate: float, seconds: float, in_flight: int, send_one) -> tuple[int, float]:
    """Start ``send_one(i)`` at start + i/rate until ``seconds`` are up; (started, seconds)."""
    gate = asyncio.Semaphore(in_flight)
    tasks = []
    began = time.monotonic()
    index = 0
    while True:
        target = began + index / rate
        if target - began >= seconds:
            break
        delay = target - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        await gate.acquire()
        if time.monotonic() - began >= seconds:
            gate.release()
            break

        async def one(i=index):
            try:
                await send_one(i)
            finally:
                gate.release()

        tasks.append(asyncio.create_task(one()))
        index += 1
    await asyncio.gather(*tasks)
    return index, time.monotonic() - began


def protection(env: dict[str, str]) -> domain_keys.DataProtection:
    """The pipeline's own KEKs and pseudonym key (the demo makes them per run)."""
    return domain_keys.DataProtection(
        KeyEncryptionKeys.parse(env["HENVIS_CONSENT_KEY_ENCRYPTION_KEYS"]),
        CasePseudonyms(decode_secret(env["HENVIS_CONSENT_CASE_PSEUDONYM_KEY"], "pseudonym key")),
        load_registry(),
    )


async def offer_decisions(
    url: str, token: str, rate: float, seconds: float, in_flight: int, pseudonyms: CasePseudonyms
) -> dict:
    sent: dict[bytes, float] = {}  # referral key -> when the API answered 202
    cases: dict[bytes, bytes] = {}  # referral key -> case pseudonym (the key on consent.decisions.v2)
    bodies: list[bytes] = []
    refused = 0
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    limits = httpx.Limits(max_connections=in_flight, max_keepalive_connections=in_flight)
    async with httpx.AsyncClient(base_url=url, headers=headers, limits=limits, timeout=60) as http:

        async def send_one(index: int) -> None:
            nonlocal refused
            event_id, body = decision(index)
            response = await http.post("/v1/decisions", content=body)
            if response.status_code == 202:
                key = str(referral_id_for(event_id)).encode()
                sent[key] = time.time()
                cases[key] = pseudonyms(json.loads(body)["case_ref"]).encode()
                bodies.append(body)
            else:
                refused += 1

        cpu_before = time.process_time()
        started, elapsed = await paced(rate, seconds, in_flight, send_one)
        client_cpu = time.process_time() - cpu_before
    return {
        "sent": sent,
        "cases": cases,
        "bodies": bodies,
        "client_cpu": client_cpu,
        "started": started,
        "refused": refused,
        "elapsed": elapsed,
    }


def sealing_ms(bodies: list[bytes], protected: domain_keys.DataProtection, rate: float) -> list[float]:
    """Per decision, paced at ``rate``: what the consent API adds to accept it sealed."""
    values = []
    for body in bodies:
        began = time.perf_counter()
        event = parse_decision(body)
        protecting = domain.Protecting(protected, new_data_key())
        domain.published_event(event, protecting)
        domain_keys.new_data_key(event, protected, protecting.data_key, datetime_now())
        values.append((time.perf_counter() - began) * 1000)
        time.sleep(max(0.0, 1 / rate - (time.perf_counter() - began)))
    return values


def datetime_now():
    from henvis.db import utcnow

    return utcnow()


async def first_look_ms(
    url: str, centre_tokens: dict[str, str], result: dict, rate: float, limit: int
) -> tuple[list[float], list[float]]:
    """Per referral, paced at ``rate``: a centre's key released over HTTP, and its blob opened."""
    fetches, opens = [], []
    routed = load_registry()
    async with httpx.AsyncClient(base_url=url, timeout=30) as http:
        for body in result["bodies"][:limit]:
            event = parse_decision(body)
            referral_id = referral_id_for(event.event_id)
            centre = routed.for_municipality(event.municipality_code)
            protecting_blob = result["sealed"][str(referral_id)]
            began = time.perf_counter()
            answer = await http.get(
                f"/v1/data-keys/{referral_id}", headers={"Authorization": f"Bearer {centre_tokens[centre.slug]}"}
            )
            data_key = base64.b64decode(answer.json()["data_key"])
            fetched = time.perf_counter()
            open_personal_data(data_key, referral_id, protecting_blob)
            fetches.append((fetched - began) * 1000)
            opens.append((time.perf_counter() - fetched) * 1000)
            await asyncio.sleep(max(0.0, 1 / rate - (time.perf_counter() - began)))
    return fetches, opens


def sealed_on_topics(bootstrap: str, topics: list[str]) -> dict[str, str]:
    """referral_id -> its ``personal`` blob, for every referral on ``topics`` so far."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False)
    found: dict[str, str] = {}
    try:
        partitions = [TopicPartition(t, p) for t in topics for p in sorted(consumer.partitions_for_topic(t) or ())]
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        end = consumer.end_offsets(partitions)
        while any(consumer.position(tp) < end[tp] for tp in partitions):
            for records in consumer.poll(timeout_ms=500).values():
                for record in records:
                    message = json.loads(record.value)
                    if message.get("personal"):
                        found[message["referral_id"]] = message["personal"]
    finally:
        consumer.close()
    return found


def stages(result: dict, decisions: ArrivalWatcher, centres: ArrivalWatcher) -> None:
    """Where the time goes: API answer -> relay published -> router published (p50, p95, p99)."""
    relay, router = [], []
    for key, answered in result["sent"].items():
        published, routed = decisions.arrived(result["cases"][key]), centres.arrived(key)
        if published is not None and routed is not None:
            relay.append((published - answered) * 1000)
            router.append((routed - published) * 1000)
    for label, values in (
        ("  of which POST 202 -> consent.decisions", relay),
        ("  of which consent.decisions -> centre", router),
    ):
        note = f"p95 {percentile(values, 0.95):.1f} ms, p99 {percentile(values, 0.99):.1f} ms"
        figure(label, percentile(values, 0.5), "ms p50", note=note)


async def offer_bare(bootstrap: str, topic: str, rate: float, seconds: float, in_flight: int) -> dict:
    sent: dict[bytes, float] = {}
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True)
    await producer.start()
    payload = b"x" * REFERRAL_BYTES
    try:

        async def send_one(index: int) -> None:
            key = str(uuid.uuid4()).encode()
            sent[key] = time.time()
            await (await producer.send(topic, key=key, value=payload))

        started, elapsed = await paced(rate, seconds, in_flight, send_one)
    finally:
        await producer.stop()
    return {"sent": sent, "started": started, "refused": 0, "elapsed": elapsed}


async def offer_two_hops(
    bootstrap: str, first: str, second: str, partition_count: int, rate: float, seconds: float, in_flight: int
) -> dict:
    """The pipeline's Kafka shape with no henvis code: each record produced to ``first`` as the
    relay does (``offer_bare``), moved to ``second`` as the router does (a read_committed
    consumer; a transactional producer per input partition, one transaction per batch holding
    the records and the next input offset, see ``_move``); the watcher times its arrival on ``second``: what Kafka
    itself costs a decision's two hops on this broker."""
    group = f"bench-two-hops-{uuid.uuid4()}"
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, group_id=group, isolation_level="read_committed", enable_auto_commit=False
    )
    await consumer.start()
    partitions = [TopicPartition(first, p) for p in range(partition_count)]
    movers = {
        tp: AIOKafkaProducer(
            bootstrap_servers=bootstrap,
            transactional_id=f"{group}-{tp.partition}",
            acks="all",
            linger_ms=0,
            retry_backoff_ms=10,  # as the router's transactional producers (henvis.kafka)
        )
        for tp in partitions
    }
    for mover in movers.values():
        await mover.start()
    consumer.assign(partitions)
    await consumer.seek_to_end(*partitions)
    moving = asyncio.create_task(_move(consumer, movers, second))
    try:
        result = await offer_bare(bootstrap, first, rate, seconds, in_flight)
        await asyncio.sleep(1.0)  # the last records' transactions
    finally:
        moving.cancel()
        await asyncio.gather(moving, return_exceptions=True)
        for client in (consumer, *movers.values()):
            await client.stop()
    return result


async def _move(consumer: AIOKafkaConsumer, movers: dict[TopicPartition, AIOKafkaProducer], topic: str) -> None:
    """As the router: a batch's records and its next input offset, written to the offsets
    topic's partition of the same number (the router's changelog), in one transaction."""
    offsets_topic = f"{topic}.offsets"

    async def one_transaction(tp: TopicPartition, records: list) -> None:
        producer = movers[tp]
        await producer.begin_transaction()
        for record in records:
            await producer.send(topic, key=record.key, value=record.value)
        next_offset = str(records[-1].offset + 1).encode()
        await producer.send(offsets_topic, key=b"next-offset", value=next_offset, partition=tp.partition)
        await producer.commit_transaction()

    while True:
        batch = await consumer.getmany(timeout_ms=200)
        await asyncio.gather(*(one_transaction(tp, records) for tp, records in batch.items()))


def limit(rate: float, result: dict, busy: dict[str, float], machine: float) -> str:
    """Each part's CPU while decisions were offered, and where the limit is when the API did
    not keep up with the offered rate (the busiest part, or the machine when none is).

    ``machine``: the share of all cores busy meanwhile (every process: the parts, the broker,
    PostgreSQL, the watchers and this load generator)."""
    for part, share in busy.items():
        figure(f"  CPU of {part} during the load", share * 100, "% of a core")
    cores = os.cpu_count() or 1
    figure("  CPU of the whole machine during the load", machine * 100, f"% of {cores} cores")
    achieved = len(result["sent"]) / result["elapsed"]
    if achieved >= 0.95 * rate:
        print(f"  kept up: {achieved:.1f} of {rate:.0f}/s offered")
        return ""
    part, share = max(busy.items(), key=lambda item: item[1])
    if share >= 0.8:
        where = f"{part} at {share * 100:.0f} % of a core (one Python process is bound by one core)"
    elif machine >= 0.9:
        where = (
            f"the machine: its {cores} cores {machine * 100:.0f} % busy (busiest part {part} at"
            f" {share * 100:.0f} % of a core; the rest is the broker, the database, the watchers, the load)"
        )
    else:
        where = (
            f"no part at a full core (busiest {part} at {share * 100:.0f} %) and the machine {machine * 100:.0f} %"
            f" busy: the API's requests wait rather than compute (database and broker round trips)"
        )
    if result["refused"]:
        where += f"; {result['refused']} answers were not 202"
    text = f"limit: {achieved:.1f} of {rate:.0f}/s offered accepted; where: {where}"
    print(f"  {text}")
    return text


def latencies_ms(watcher: ArrivalWatcher, sent: dict[bytes, float], drain_seconds: float) -> tuple[list[float], int]:
    arrived = watcher.wait_for(sent, drain_seconds)
    values = [(watcher.arrived(key) - when) * 1000 for key, when in sent.items() if watcher.arrived(key) is not None]
    return values, len(sent) - arrived


def encryption(figures: dict, sealing: list[float], looks: tuple[list[float], list[float]]) -> None:
    """What crypto-shredding adds to p50, against the pipeline's own p50 in this run."""
    fetches, opens = looks
    seal, fetch, opened = percentile(sealing, 0.5), percentile(fetches, 0.5), percentile(opens, 0.5)
    look = fetch + opened
    figure("  encryption: sealing at the consent API", seal, "ms p50", note=f"p95 {percentile(sealing, 0.95):.2f} ms")
    figure("  encryption: key release over HTTP", fetch, "ms p50", note=f"p95 {percentile(fetches, 0.95):.2f} ms")
    figure("  encryption: opening the blob", opened, "ms p50", note=f"p95 {percentile(opens, 0.95):.3f} ms")
    without = figures["p50"] - seal
    figure("  p50 without encryption (pipeline - sealing)", without, "ms")
    figure("  p50 with encryption (pipeline + first look)", figures["p50"] + look, "ms", without)
    figures["added"] = seal + look
    print(
        f"  encryption adds {seal:.2f} ms to p50 up to the centre topic, {seal + opened:.2f} ms of crypto in all,"
        f" and the key-store round trip {fetch:.1f} ms to a centre's first look (budget 5 ms)"
    )


def report(label: str, result: dict, values: list[float], missing: int, baseline: dict | None) -> dict:
    achieved = len(result["sent"]) / result["elapsed"]
    figures = {
        "achieved": achieved,
        "p50": percentile(values, 0.50),
        "p95": percentile(values, 0.95),
        "p99": percentile(values, 0.99),
    }
    note = f"{len(result['sent'])} in {result['elapsed']:.1f} s"
    if "client_cpu" in result:  # the load generator must not be the bottleneck: show what it used
        note += f", load generator CPU {result['client_cpu'] / result['elapsed'] * 100:.0f} % of a core"
    figure(f"{label}: achieved rate", achieved, "per s", note=note)
    for name in ("p50", "p95", "p99"):
        figure(f"{label}: latency {name}", figures[name], "ms", baseline[name] if baseline else None)
    if missing or result["refused"]:
        print(f"  {label}: {missing} not arrived within the drain time, {result['refused']} refused by the API")
    return figures


def run_engine(engine: str, bootstrap: str, database: str | None, extra_env: dict, rates: list[float], args) -> list:
    """Every rate against the pipeline with its consent database on ``engine``; the summary rows."""
    summary = []
    parts = ["router", "consent-relay", "consent-api"]
    with Pipeline(bootstrap, parts, extra_env, database=database) as pipeline:
        settings = pipeline.kafka_settings()
        bare_topic = topic_name("bench.bare.v1", settings)
        hop_topics = [topic_name(f"bench.hop{n}.v1", settings) for n in (1, 2)]
        ensure_topics(settings, dict.fromkeys((bare_topic, *hop_topics, f"{hop_topics[1]}.offsets"), False))
        token = pipeline.credentials.tokens["police"]
        decisions_topic = topic_name(CONSENT_DECISIONS.name, settings)
        with (
            ArrivalWatcher(bootstrap, pipeline.centre_topics()) as watcher,
            ArrivalWatcher(bootstrap, [decisions_topic]) as relayed,
        ):
            # Warm-up: first requests pay for connections, faust's first fetch, SQLite caches.
            protected = protection(pipeline.env)
            warm = asyncio.run(offer_decisions(pipeline.consent_url, token, 10, 2, 4, protected.pseudonyms))
            watcher.wait_for(warm["sent"], args.drain_seconds)
            for rate in rates:
                title(f"{engine}: offered {rate:.0f} decisions/s for {args.seconds:.0f} s")
                with ArrivalWatcher(bootstrap, [bare_topic]) as bare_watcher:
                    bare = asyncio.run(offer_bare(bootstrap, bare_topic, rate, args.seconds, args.in_flight))
                    values, missing = latencies_ms(bare_watcher, bare["sent"], args.drain_seconds)
                base = report("bare produce->consume", bare, values, missing, None)
                with ArrivalWatcher(bootstrap, [hop_topics[1]]) as hops_watcher:
                    hops = asyncio.run(
                        offer_two_hops(bootstrap, *hop_topics, settings.partitions, rate, args.seconds, args.in_flight)
                    )
                    values, missing = latencies_ms(hops_watcher, hops["sent"], args.drain_seconds)
                floor = report("bare two hops, the second transactional", hops, values, missing, base)
                cpu_before = {part: _common.cpu_seconds(pipeline.pid(part)) for part in parts}
                machine_before = _common.machine_cpu_seconds()
                product = asyncio.run(
                    offer_decisions(
                        pipeline.consent_url, token, rate, args.seconds, args.in_flight, protected.pseudonyms
                    )
                )
                busy = {
                    part: (_common.cpu_seconds(pipeline.pid(part)) - cpu_before[part]) / product["elapsed"]
                    for part in parts
                }
                machine_after = _common.machine_cpu_seconds()
                machine = (machine_after[0] - machine_before[0]) / (machine_after[1] - machine_before[1])
                values, missing = latencies_ms(watcher, product["sent"], args.drain_seconds)
                figures = report("POST 202 -> centre topic", product, values, missing, base)
                figures["floor"] = floor
                for name in ("p50", "p95", "p99"):
                    figure(f"  {name} against the two bare hops", figures[name], "ms", floor[name])
                stages(product, relayed, watcher)
                figures["limit"] = limit(rate, product, busy, machine)
                sealing = sealing_ms(product["bodies"], protected, rate)
                product["sealed"] = sealed_on_topics(bootstrap, pipeline.centre_topics())
                looks = asyncio.run(
                    first_look_ms(pipeline.consent_url, pipeline.credentials.centre_tokens(), product, rate, args.looks)
                )
                encryption(figures, sealing, looks)
                summary.append((engine, rate, base, figures))
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bootstrap", default=None, help="an existing broker; default: start a throwaway one")
    parser.add_argument("--rates", default="50,500", help="offered decisions/s, comma-separated")
    parser.add_argument("--seconds", type=float, default=15, help="load time per rate and contender")
    parser.add_argument(
        "--in-flight",
        type=int,
        default=8,
        help="most requests outstanding at once (SQLite's API accepts fewer per second above ~8)",
    )
    parser.add_argument("--engines", default="sqlite,postgresql", help="consent database engines, in turn")
    parser.add_argument("--postgres-url", default=os.environ.get("HENVIS_TEST_POSTGRES_URL"), help="admin URL")
    parser.add_argument("--looks", type=int, default=300, help="referrals whose key a centre fetches and opens")
    parser.add_argument("--drain-seconds", type=float, default=90, help="how long to wait for the last referrals")
    parser.add_argument(
        "--service-env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="extra setting for the services, e.g. HENVIS_CONSENT_RELAY_POLL_INTERVAL_SECONDS=0.05",
    )
    args = parser.parse_args(argv)
    rates = [float(rate) for rate in args.rates.split(",")]

    print(f"End-to-end latency   {_common.machine_line()}")
    summary = []
    with _common.kafka_broker(args.bootstrap) as bootstrap:
        extra_env = dict(item.split("=", 1) for item in args.service_env)
        if extra_env:
            print(f"  service settings: {extra_env}")
        for engine in args.engines.split(","):
            if engine == "postgresql" and not args.postgres_url:
                print("postgresql: skipped (no --postgres-url / HENVIS_TEST_POSTGRES_URL)")
                continue
            database = (
                _common.scratch_postgres(args.postgres_url)
                if engine == "postgresql"
                else contextlib.nullcontext(None)  # the demo's SQLite file
            )
            with database as url:
                summary += run_engine(engine, bootstrap, url, extra_env, rates, args)
    title("summary (ms; ratio = pipeline / bare broker)")
    for engine, rate, base, figures in summary:
        print(
            f"  {engine:<10} offered {rate:>4.0f}/s  achieved {figures['achieved']:6.1f}/s (bare {base['achieved']:6.1f}/s)   "
            + "   ".join(
                f"{name} {figures[name]:7.1f} vs {base[name]:5.1f} (x{figures[name] / base[name]:.1f})"
                for name in ("p50", "p95", "p99")
            )
            + f"   encryption adds {figures.get('added', float('nan')):.2f} ms to p50"
        )
        floor = figures["floor"]
        print(
            f"  {'':<10} two bare hops (the second transactional): "
            + "   ".join(
                f"{name} {floor[name]:5.1f} (pipeline x{figures[name] / floor[name]:.1f})"
                for name in ("p50", "p95", "p99")
            )
        )
        if figures.get("limit"):
            print(f"  {'':<10} {figures['limit']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
