"""Consent API: sustained accepted decisions/s vs a bare insert loop into the same database.

    .venv/bin/python bench/consent_vs_insert.py [--seconds 15] [--clients 8] [--engines sqlite,postgresql]

Per engine: a real ``henvis consent serve`` (started by the supervisor, demo settings) gets
valid ``consent.given`` bodies from ``--clients`` concurrent keep-alive clients (closed
loop) for ``--seconds``; accepted = answered 202.  Then the baseline, same database, same
number of threads and seconds: one transaction per decision inserting one row of the same
size (id + payload + time) with SQLAlchemy Core - no HTTP, no validation, no idempotency
record, no outbox.  Prints both rates and the ratio API / bare; asserts nothing.

The relay is not running (the API's own ceiling); ``--with-relay`` adds it (then a Kafka
broker is needed: ``--bootstrap`` or a throwaway one), ``bench/consent_load.py`` measures
the outbox lag behind the API.  PostgreSQL: ``--postgres-url`` / ``HENVIS_TEST_POSTGRES_URL``
(an admin URL; a ``henvis_bench_*`` database is created and dropped).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common
import httpx
import sqlalchemy as sa
from _common import Pipeline, decision, figure, percentile, title

from henvis.db import make_engine

BARE = sa.Table(
    "bench_bare_inserts",
    sa.MetaData(),
    sa.Column("event_id", sa.String(36), primary_key=True),
    sa.Column("payload", sa.Text, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
)


def closed_loop(clients: int, seconds: float, work) -> tuple[int, int, float, list[float]]:
    """``clients`` threads call ``work(client, index)`` (True = accepted) for ``seconds``."""
    accepted, refused = [0] * clients, [0] * clients
    latencies: list[list[float]] = [[] for _ in range(clients)]
    stop_at = time.monotonic() + seconds

    def run(number: int) -> None:
        with work.client() as client:
            index = number
            while time.monotonic() < stop_at:
                started = time.perf_counter()
                ok = work(client, index)
                latencies[number].append(time.perf_counter() - started)
                if ok:
                    accepted[number] += 1
                else:
                    refused[number] += 1
                index += clients

    threads = [threading.Thread(target=run, args=(n,)) for n in range(clients)]
    began = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sum(accepted), sum(refused), time.monotonic() - began, [v for per in latencies for v in per]


class ApiWork:
    def __init__(self, url: str, token: str):
        self.url = url
        self.headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}

    def client(self):
        return httpx.Client(base_url=self.url, headers=self.headers, timeout=30)

    def __call__(self, http: httpx.Client, index: int) -> bool:
        _, body = decision(index)
        return http.post("/v1/decisions", content=body).status_code == 202


class BareWork:
    def __init__(self, engine: sa.Engine):
        self.engine = engine

    @contextlib.contextmanager
    def client(self):
        yield None

    def __call__(self, _client, index: int) -> bool:
        event_id, body = decision(index)
        with self.engine.begin() as conn:
            conn.execute(
                BARE.insert().values(event_id=str(event_id), payload=body.decode(), created_at=datetime.now(UTC))
            )
        return True


def bench_engine(name: str, database_url: str, bootstrap: str, args) -> tuple[float, float]:
    parts = ["consent-relay", "consent-api"] if args.with_relay else ["consent-api"]
    title(f"{name}: {args.clients} clients, {args.seconds:.0f} s each")
    with Pipeline(bootstrap, parts, database=database_url) as pipeline:
        work = ApiWork(pipeline.consent_url, pipeline.credentials.tokens["police"])
        closed_loop(2, 1, work)  # warm-up: connections, caches, first-request imports
        profiler = (
            _common.py_spy(pipeline.pid("consent-api"), args.seconds, f"{args.profile}-{name}")
            if args.profile
            else None
        )
        cpu_before = _common.cpu_seconds(pipeline.pid("consent-api"))
        accepted, refused, elapsed, latencies = closed_loop(args.clients, args.seconds, work)
        api_cpu_ms = (_common.cpu_seconds(pipeline.pid("consent-api")) - cpu_before) * 1000 / max(accepted, 1)
        if profiler:
            profiler.wait(60)
    engine = make_engine(database_url)
    try:
        BARE.create(engine, checkfirst=True)
        closed_loop(2, 1, BareWork(engine))
        cpu_before = time.process_time()
        inserted, _, bare_elapsed, bare_latencies = closed_loop(args.clients, args.seconds, BareWork(engine))
        bare_cpu_ms = (time.process_time() - cpu_before) * 1000 / max(inserted, 1)
    finally:
        engine.dispose()
    api_rate, bare_rate = accepted / elapsed, inserted / bare_elapsed
    figure("bare insert loop", bare_rate, "rows/s", note=f"p50 {percentile(bare_latencies, 0.5) * 1000:.1f} ms")
    figure(
        "consent API, accepted (202)",
        api_rate,
        "per s",
        bare_rate,
        note=f"p50 {percentile(latencies, 0.5) * 1000:.1f} ms, p95 {percentile(latencies, 0.95) * 1000:.1f} ms, {refused} not 202",
    )
    figure("bare insert loop: CPU per row", bare_cpu_ms, "ms")
    figure("consent API: CPU per accepted decision", api_cpu_ms, "ms", bare_cpu_ms, note="API process only")
    return api_rate, bare_rate, api_cpu_ms, bare_cpu_ms


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=15)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--engines", default="sqlite,postgresql")
    parser.add_argument("--postgres-url", default=os.environ.get("HENVIS_TEST_POSTGRES_URL"))
    parser.add_argument("--with-relay", action="store_true", help="run the outbox relay during the load")
    parser.add_argument("--bootstrap", default=None, help="broker for --with-relay; default: a throwaway one")
    parser.add_argument(
        "--profile",
        default=None,
        metavar="PREFIX",
        help="py-spy the API during the load: PREFIX-<engine>.svg (flame graph) and .txt (collapsed stacks)",
    )
    args = parser.parse_args(argv)

    print(f"Consent API vs bare inserts   {_common.machine_line()}")
    results = {}
    broker = _common.kafka_broker(args.bootstrap) if args.with_relay else contextlib.nullcontext("127.0.0.1:9")
    with broker as bootstrap:
        for name in args.engines.split(","):
            if name == "sqlite":
                folder = Path(tempfile.mkdtemp(prefix="henvis-bench-sqlite-"))
                results[name] = bench_engine(name, f"sqlite:///{folder / 'consent.db'}", bootstrap, args)
            elif name == "postgresql":
                if not args.postgres_url:
                    print("postgresql: skipped (no --postgres-url / HENVIS_TEST_POSTGRES_URL)")
                    continue
                with _common.scratch_postgres(args.postgres_url) as url:
                    results[name] = bench_engine(name, url, bootstrap, args)
    title("summary (accepted decisions/s; ratio = API / bare insert loop)")
    for name, (api_rate, bare_rate, api_cpu, bare_cpu) in results.items():
        print(
            f"  {name:<11} API {api_rate:7.1f}/s   bare insert {bare_rate:7.1f}/s   ratio {api_rate / bare_rate:.3f}"
            f"   CPU/decision {api_cpu:.2f} ms vs {bare_cpu:.2f} ms (x{api_cpu / bare_cpu:.1f})"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
