"""Funnel query latency over 10^4, 10^5 and 10^6 synthetic referrals, SQLite and PostgreSQL.

Bulk-inserts pseudonymous referral rows straight into a fresh stats database (migrated with
the service's own Alembic scripts, so the indexes are the production ones), growing it
size by size, and times what the researcher API does per request: the SQL aggregation plus
suppression and publishing (``StatsReader``), median of ``--repeat`` runs after a warm-up.

    .venv/bin/python bench/stats_query.py                       # both engines, 10^4 and 10^5 (~1 min)
    .venv/bin/python bench/stats_query.py --sizes 10000,100000,1000000   # and 10^6 (~5 min)

The baseline is a bare ``count(*)`` over the same referrals table (the least work that reads
every row); each query's ratio to it shows what the aggregation and suppression add.

PostgreSQL comes from ``--postgres-url`` or ``HENVIS_TEST_POSTGRES_URL`` (an admin URL: a
``henvis_bench_*`` database is created and dropped). Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common

from henvis.db import make_engine, migrate
from henvis.registry import load_registry
from henvis.services.stats.api import StatsReader
from henvis.services.stats.models import referrals
from henvis.services.stats.store import Filters, StatsStore

FIRST_DAY = date(2020, 3, 1)
SPAN_DAYS = 6 * 365
CODES = ["657", "661", "665", "671", "740", "756", "760", "773", "779", "787", "791"]
OFFENCES = ["drink_driving", "drug_driving", "drink_and_drug_driving"]
COLUMNS = [column.name for column in referrals.columns]

QUERIES = {
    "funnel, all time": lambda reader: reader.funnel(Filters()),
    "funnel, 1 year + municipality": lambda reader: reader.funnel(
        Filters(date_from=date(2022, 1, 1), date_to=date(2022, 12, 31), municipality="657")
    ),
    "monthly, all time": lambda reader: reader.monthly(Filters()),
    "by municipality, 1 year": lambda reader: reader.by_municipality(
        Filters(date_from=date(2022, 1, 1), date_to=date(2022, 12, 31))
    ),
}


def synthetic_rows(count: int, rng: random.Random):
    for _ in range(count):
        decided_on = FIRST_DAY + timedelta(days=rng.randrange(SPAN_DAYS))
        accepted = rng.random() < 0.4
        row = {
            "referral_id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
            "decision": "accepted" if accepted else "declined",
            "withdrawn": accepted and rng.random() < 0.03,
            "offence": rng.choice(OFFENCES),
            "municipality_code": rng.choice(CODES),
            "centre": None,
            "decided_on": decided_on,
            "decided_month": decided_on.strftime("%Y-%m"),
            "contact_due_by": decided_on + timedelta(days=1) if accepted else None,
            "first_contact_at": None,
            "days_to_first_contact": None,
            "contacted_by_due": None,
            "first_interview": False,
            "follow_up": False,
        }
        if accepted and rng.random() < 0.9:
            days = rng.choices(range(8), weights=(2, 50, 20, 12, 6, 4, 3, 3))[0]
            row["days_to_first_contact"] = days
            row["first_contact_at"] = datetime.combine(decided_on + timedelta(days=days), datetime.min.time(), UTC)
            row["contacted_by_due"] = days <= 1
            row["first_interview"] = rng.random() < 0.67 / 0.9
            row["follow_up"] = row["first_interview"] and rng.random() < 0.32 / 0.67
        yield row


def bulk_insert(engine: sa.Engine, count: int, rng: random.Random, progress) -> None:
    batch = 50_000
    done = 0
    while done < count:
        size = min(batch, count - done)
        rows = list(synthetic_rows(size, rng))
        if engine.dialect.name == "postgresql":
            _copy_postgres(engine, rows)
        else:
            with engine.begin() as conn:
                conn.execute(referrals.insert(), rows)
        done += size
        progress(done, count)


def _copy_postgres(engine: sa.Engine, rows: list[dict]) -> None:
    raw = engine.raw_connection()
    try:
        with raw.cursor() as cursor, cursor.copy(f"COPY referrals ({', '.join(COLUMNS)}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row([row[name] for name in COLUMNS])
        raw.commit()
    finally:
        raw.close()


#: The baseline: the cheapest query that still reads every referral (a bare row count).
BASELINE = "bare count(*) over referrals"


def _bare_count(reader: StatsReader) -> int:
    with reader.store.engine.connect() as conn:
        return conn.execute(sa.select(sa.func.count()).select_from(referrals)).scalar_one()


def time_queries(reader: StatsReader, repeat: int) -> dict[str, float]:
    timings = {}
    for name, query in {BASELINE: _bare_count, **QUERIES}.items():
        query(reader)  # warm-up: caches, plans
        samples = []
        for _ in range(repeat):
            started = time.perf_counter()
            query(reader)
            samples.append(time.perf_counter() - started)
        timings[name] = statistics.median(samples) * 1000
    return timings


def bench_engine(url: str, sizes: list[int], repeat: int, seed: int) -> dict[int, dict[str, float]]:
    migrate(url, "stats")
    engine = make_engine(url)
    store = StatsStore(engine)
    reader = StatsReader(store, load_registry(), threshold=5)
    rng = random.Random(seed)
    results: dict[int, dict[str, float]] = {}
    have = 0
    try:
        for size in sizes:
            label = f"  {engine.dialect.name}: inserting up to {size:,}"

            def progress(done, total, label=label, base=have, size=size):
                sys.stderr.write(f"\r{label}  {base + done:>10,}/{size:,}")
                sys.stderr.flush()

            started = time.perf_counter()
            bulk_insert(engine, size - have, rng, progress)
            have = size
            inserted = time.perf_counter()
            # The worker keeps the daily aggregates as events arrive; a bulk load rebuilds them.
            store.rebuild_aggregates()
            with engine.begin() as conn:
                conn.execute(sa.text("ANALYZE"))
            sys.stderr.write(
                f"  (insert {inserted - started:.1f}s, aggregates rebuilt in {time.perf_counter() - inserted:.1f}s)\n"
            )
            results[size] = time_queries(reader, repeat)
            baseline = results[size][BASELINE]
            for name, ms in results[size].items():
                ratio = "" if name == BASELINE else f"  ratio {ms / max(baseline, 1e-9):6.2f}"
                print(f"{engine.dialect.name:<11}{size:>10,}  {name:<32}{ms:>10.1f} ms{ratio}", flush=True)
    finally:
        engine.dispose()
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="10000,100000", help="10^6 too (about 3 min more): 10000,100000,1000000")
    parser.add_argument("--engines", default="sqlite,postgresql")
    parser.add_argument("--postgres-url", default=os.environ.get("HENVIS_TEST_POSTGRES_URL"))
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    sizes = sorted(int(size) for size in args.sizes.split(","))
    all_results: dict[str, dict[int, dict[str, float]]] = {}
    print(f"Stats query latency   {_common.machine_line()}")
    print(f"{'engine':<11}{'referrals':>10}  {'query (API request, median)':<32}{'latency':>13}  (ratio to {BASELINE})")
    for engine_name in args.engines.split(","):
        if engine_name == "sqlite":
            with tempfile.TemporaryDirectory() as folder:
                all_results["sqlite"] = bench_engine(
                    f"sqlite:///{Path(folder) / 'bench.db'}", sizes, args.repeat, args.seed
                )
        elif engine_name == "postgresql":
            if not args.postgres_url:
                print("postgresql: skipped (no --postgres-url / HENVIS_TEST_POSTGRES_URL)")
                continue
            with _common.scratch_postgres(args.postgres_url) as url:
                all_results["postgresql"] = bench_engine(url, sizes, args.repeat, args.seed)
    print("\nGrowth (latency at the largest size / at the smallest):")
    for engine_name, results in all_results.items():
        smallest, largest = results[sizes[0]], results[sizes[-1]]
        for name in [BASELINE, *QUERIES]:
            print(
                f"  {engine_name:<11}{name:<32} x{largest[name] / max(smallest[name], 1e-9):.1f} for x{sizes[-1] // sizes[0]} rows"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
