"""Sustained accept rate of ``POST /v1/decisions`` and the outbox lag behind it.

Starts a real ``henvis consent serve`` and ``henvis consent relay`` per database engine,
posts valid decisions from a few concurrent clients for a fixed time, samples the outbox
backlog while doing so, then waits for the relay to drain it and reads the per-row lag
(``sent_at - created_at``) from the database. Prints figures; asserts nothing.

    .venv/bin/python bench/consent_load.py [--seconds 15] [--clients 4] [--engines sqlite,postgresql]

PostgreSQL comes from ``--postgres-url`` / ``HENVIS_TEST_POSTGRES_URL`` (a scratch database
is created and dropped); Kafka from ``--kafka`` / ``HENVIS_KAFKA_BOOTSTRAP_SERVERS``, else a
broker of its own is started in a temporary folder.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import httpx
from sqlalchemy import select

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

import _common
from _common import figure, free_port, percentile, title

from henvis.auth import hash_token
from henvis.db import make_engine
from henvis.services.consent import store
from henvis.services.consent.models import consent_outbox
from henvis.shredding import new_secret

TOKEN = "hv_bench-police-token-" + uuid.uuid4().hex
CLIENTS = [{"name": "bench-police", "role": "police", "token_sha256": hash_token(TOKEN)}]


def _decision(index: int) -> bytes:
    case_ref = f"4100-{index % 5000:05d}-00001-26"
    base = {
        "event_id": str(uuid.uuid4()),
        "occurred_at": "2026-03-02T10:15:00+01:00",
        "case_ref": case_ref,
        "offence": "drink_driving",
        "charged_on": "2026-03-01",
        "municipality_code": "657",
    }
    if index % 2:
        return json.dumps({**base, "event_type": "consent.declined"}).encode()
    return json.dumps(
        {
            **base,
            "event_type": "consent.given",
            "person": {"full_name": "Bench Testesen", "phone": f"+452{index % 10_000_000:07d}"},
            "consent_text_version": "2020-03",
            "recorded_by": "bench",
        }
    ).encode()


def _wait_ready(url: str, proc: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"consent serve exited:\n{log.read_text()[-2000:]}")
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise SystemExit("consent serve did not become ready")


def run_engine(name: str, database_url: str, kafka: str, seconds: float, clients: int, work: Path) -> dict:
    env = {
        **os.environ,
        "HENVIS_RUN_DIR": str(work),
        "HENVIS_CONSENT_DATABASE_URL": database_url,
        "HENVIS_API_CLIENTS": json.dumps(CLIENTS),
        "HENVIS_KAFKA_BOOTSTRAP_SERVERS": kafka,
        "HENVIS_KAFKA_TOPIC_PREFIX": f"bench{uuid.uuid4().hex[:6]}.",
        "HENVIS_LOG_LEVEL": "INFO",
        "HENVIS_CONSENT_KEY_ENCRYPTION_KEYS": f"bench:{new_secret()}",
        "HENVIS_CONSENT_CASE_PSEUDONYM_KEY": new_secret(),
    }
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    serve_log, relay_log = work / f"{name}-serve.log", work / f"{name}-relay.log"
    command = [sys.executable, "-m", "henvis.cli", "consent"]
    with open(serve_log, "wb") as out:
        serve = subprocess.Popen(
            [*command, "serve", "--port", str(port)], env=env, stdout=out, stderr=subprocess.STDOUT
        )
    _wait_ready(url, serve, serve_log)
    with open(relay_log, "wb") as out:
        relay = subprocess.Popen([*command, "relay"], env=env, stdout=out, stderr=subprocess.STDOUT)
    engine = make_engine(database_url)
    try:
        accepted, failed = [0] * clients, [0] * clients
        latencies: list[list[float]] = [[] for _ in range(clients)]
        samples: list[tuple[int, float]] = []
        stop_at = time.monotonic() + seconds

        def client(number: int) -> None:
            headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
            index = number
            with httpx.Client(base_url=url, headers=headers, timeout=30) as http:
                while time.monotonic() < stop_at:
                    started = time.perf_counter()
                    response = http.post("/v1/decisions", content=_decision(index))
                    latencies[number].append(time.perf_counter() - started)
                    if response.status_code == 202:
                        accepted[number] += 1
                    else:
                        failed[number] += 1
                    index += clients

        def sampler() -> None:
            while time.monotonic() < stop_at:
                backlog = store.backlog(engine)
                samples.append((backlog.unsent, backlog.oldest_age_seconds))
                time.sleep(0.5)

        threads = [threading.Thread(target=client, args=(n,)) for n in range(clients)] + [
            threading.Thread(target=sampler)
        ]
        began = time.monotonic()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        elapsed = time.monotonic() - began
        drain_began = time.monotonic()
        while store.backlog(engine).unsent and time.monotonic() - drain_began < 120:
            time.sleep(0.2)
        drain = time.monotonic() - drain_began
        with engine.connect() as conn:
            rows = conn.execute(select(consent_outbox.c.created_at, consent_outbox.c.sent_at)).all()
        lags = [(sent - created).total_seconds() for created, sent in rows if sent is not None]
        all_latencies = [value for per_client in latencies for value in per_client]
        return {
            "engine": name,
            "accepted": sum(accepted),
            "failed": sum(failed),
            "seconds": round(elapsed, 1),
            "accepted_per_s": round(sum(accepted) / elapsed, 1),
            "latency_ms_p50": round(statistics.median(all_latencies) * 1000, 1),
            "latency_ms_p95": round(percentile(all_latencies, 0.95) * 1000, 1),
            "backlog_max": max((unsent for unsent, _ in samples), default=0),
            "oldest_unsent_age_s_max": round(max((age for _, age in samples), default=0.0), 2),
            "lag_s_p50": round(statistics.median(lags), 3) if lags else None,
            "lag_s_p95": round(percentile(lags, 0.95), 3) if lags else None,
            "lag_s_max": round(max(lags), 3) if lags else None,
            "drain_after_load_s": round(drain, 2),
            "published": len(lags),
        }
    finally:
        for proc in (serve, relay):
            proc.terminate()
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
        engine.dispose()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=15)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--engines", default="sqlite,postgresql")
    parser.add_argument("--postgres-url", default=os.environ.get("HENVIS_TEST_POSTGRES_URL"))
    parser.add_argument("--kafka", default=os.environ.get("HENVIS_KAFKA_BOOTSTRAP_SERVERS"))
    args = parser.parse_args()

    print(f"Consent load with the relay   {_common.machine_line()}")
    with tempfile.TemporaryDirectory(prefix="consent-bench-") as tmp, _common.kafka_broker(args.kafka) as kafka:
        work = Path(tmp)
        results = []
        for name in args.engines.split(","):
            if name == "sqlite":
                results.append(
                    run_engine(name, f"sqlite:///{work / 'consent.db'}", kafka, args.seconds, args.clients, work)
                )
            elif name == "postgresql":
                if not args.postgres_url:
                    print("postgresql: skipped (no --postgres-url / HENVIS_TEST_POSTGRES_URL)")
                    continue
                with _common.scratch_postgres(args.postgres_url) as url:
                    results.append(run_engine(name, url, kafka, args.seconds, args.clients, work))
    for result in results:
        title(f"{result['engine']}: {args.clients} clients, {result['seconds']:.0f} s, relay running")
        figure(
            "accepted (202)",
            result["accepted_per_s"],
            "per s",
            note=f"{result['accepted']} accepted, {result['failed']} not",
        )
        figure("API latency p50", result["latency_ms_p50"], "ms", note=f"p95 {result['latency_ms_p95']} ms")
        figure(
            "outbox backlog, most unsent rows seen",
            result["backlog_max"],
            "rows",
            note=f"oldest unsent {result['oldest_unsent_age_s_max']} s",
        )
        if result["lag_s_p50"] is not None:
            figure(
                "relay lag (sent_at - created_at) p50",
                result["lag_s_p50"] * 1000,
                "ms",
                note=f"p95 {result['lag_s_p95'] * 1000:.0f} ms, max {result['lag_s_max'] * 1000:.0f} ms",
            )
        figure("drain after the load", result["drain_after_load_s"], "s", note=f"{result['published']} published")
    print("\n" + "\n".join(json.dumps(result) for result in results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
