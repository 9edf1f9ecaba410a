"""What the protection of every table together costs researchers, on the pilot replay.

Replays the pilot's facts and outcomes into a fresh SQLite stats database and asks the
researcher tables a researcher would ask (the funnel, the monthly and the per-municipality
tables, unfiltered and with each offence, each municipality and each quarter as a filter).
For each table it counts the counts withheld (shown as ``<5``) two ways, in the same run:

* **before** (the baseline): each response suppressed on its own, small cells and the
  complementary cells of that one table (``domain.publish_table`` / ``publish_single``, the
  method up to issue 14);
* **after**: the counts read from one protection of the whole cube (``StatsReader``, as served).

It also tries the differencing attack of issue 14 (a municipality's withheld offence cell as
the municipality's figure minus its other offences) on every municipality and count, both ways. Prints figures; asserts
nothing.

    .venv/bin/python bench/stats_protection.py [--threshold 5]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Callable
from datetime import date
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common

from henvis.db import make_engine, migrate
from henvis.registry import load_registry
from henvis.services.stats import domain
from henvis.services.stats.reader import OTHER_MUNICIPALITY, StatsReader
from henvis.services.stats.store import Filters, StatsStore
from henvis_dev.pilot import generate_pilot

OFFENCES = ("drink_driving", "drug_driving", "drink_and_drug_driving")
QUARTERS = ((date(2021, 4, 1), date(2021, 6, 30)), (date(2021, 7, 1), date(2021, 9, 30)))
QUARTERS += ((date(2021, 10, 1), date(2021, 12, 31)), (date(2022, 1, 1), date(2022, 3, 31)))


class PerResponse:
    """The baseline: each response suppressed on its own (the method before issue 14)."""

    def __init__(self, store: StatsStore, reader: StatsReader, threshold: int):
        self.store, self.reader, self.threshold = store, reader, threshold

    def funnel(self, filters: Filters) -> list[dict]:
        return [domain.publish_single(self.store.funnels(filters)[None], self.threshold)]

    def monthly(self, filters: Filters) -> list[dict]:
        by_month = self.store.funnels(filters, "month")
        months = [row["month"] for row in self.reader.monthly(filters)["rows"]]  # the months served
        rows, total = domain.publish_table([(m, by_month.get(m, domain.RawFunnel())) for m in months], self.threshold)
        return [*rows, total]

    def by_municipality(self, filters: Filters) -> list[dict]:
        by_code = self.store.funnels(filters, "municipality")
        codes = [centre.municipality_code for centre in self.reader.registry.centres]
        if filters.municipality:
            codes = [code for code in codes if code == filters.municipality]
        groups = [(code, by_code.get(code, domain.RawFunnel())) for code in codes]
        other = domain.RawFunnel()
        for code, raw in by_code.items():
            if code not in codes:
                other.add(raw)
        if other.offered:
            groups.append((OTHER_MUNICIPALITY, other))
        rows, total = domain.publish_table(groups, self.threshold)
        return [*rows, total]


def served_rows(body: dict) -> list[dict]:
    return [*body["rows"], body["total"]] if "rows" in body else [body]


def withheld(rows: list[dict], label: str) -> tuple[int, int]:
    counts = [row[name] for row in rows for name in domain.COUNT_FIELDS]
    return sum(value == label for value in counts), len(counts)


def tables(registry) -> list[tuple[str, str, list[Filters]]]:
    codes = [centre.municipality_code for centre in registry.centres]
    by_offence = [Filters(offence=offence) for offence in OFFENCES]
    by_code = [Filters(municipality=code) for code in codes]
    by_quarter = [Filters(date_from=first, date_to=last) for first, last in QUARTERS]
    return [
        ("funnel, whole pilot", "funnel", [Filters()]),
        ("funnel, each municipality", "funnel", by_code),
        (
            "funnel, each municipality x offence",
            "funnel",
            [Filters(municipality=c, offence=o) for c in codes for o in OFFENCES],
        ),
        ("monthly, whole district", "monthly", [Filters()]),
        ("monthly, each offence", "monthly", by_offence),
        ("monthly, each municipality", "monthly", by_code),
        ("by municipality, whole pilot", "by_municipality", [Filters()]),
        ("by municipality, each offence", "by_municipality", by_offence),
        ("by municipality, each quarter", "by_municipality", by_quarter),
    ]


def differencing(ask: Callable[[Filters], dict], codes: list[str], label: str, threshold: int) -> int:
    """Issue 14's attack on every municipality x offence cell and count: a withheld figure as
    the municipality's figure minus its other offences. How many small cells it reveals."""
    revealed = 0
    for code in codes:
        whole = ask(Filters(municipality=code))
        parts = {offence: ask(Filters(municipality=code, offence=offence)) for offence in OFFENCES}
        for name in domain.COUNT_FIELDS:
            for offence in OFFENCES:
                others = [parts[other][name] for other in OFFENCES if other != offence]
                if parts[offence][name] != label or label in (whole[name], *others):
                    continue
                revealed += 0 < whole[name] - sum(others) < threshold
    return revealed


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threshold", type=int, default=5, help="smallest count shown (default 5)")
    args = parser.parse_args(argv)
    print(_common.machine_line())
    with tempfile.TemporaryDirectory() as folder:
        url = f"sqlite:///{folder}/stats.db"
        migrate(url, "stats")
        store = StatsStore(make_engine(url))
        plan = generate_pilot()
        for fact in plan.facts():
            store.apply_fact(fact)
        for outcome in plan.outcome_events():
            store.apply_outcome(outcome)
        registry = load_registry()
        reader = StatsReader(store, registry, args.threshold)
        before = PerResponse(store, reader, args.threshold)
        label = domain.suppressed_label(args.threshold)
        _common.title(f"Counts withheld per table, pilot replay, threshold {args.threshold} (before = per response)")
        print(f"  {'table':<40}{'counts':>8}{'before':>9}{'after':>9}")
        all_before = all_after = all_counts = 0
        for name, method, filter_list in tables(registry):
            hidden_before = hidden_after = counts = 0
            for filters in filter_list:
                hidden, total = withheld(getattr(before, method)(filters), label)
                hidden_before += hidden
                counts += total
                hidden_after += withheld(served_rows(getattr(reader, method)(filters)), label)[0]
            print(f"  {name:<40}{counts:>8}{hidden_before:>9}{hidden_after:>9}")
            all_before, all_after, all_counts = (
                all_before + hidden_before,
                all_after + hidden_after,
                all_counts + counts,
            )
        print(f"  {'all tables':<40}{all_counts:>8}{all_before:>9}{all_after:>9}")
        _common.figure(
            "share of counts withheld, after", 100 * all_after / all_counts, "%", 100 * all_before / all_counts
        )
        _common.title("Issue 14's differencing: municipality minus its other offences, every count")
        codes = [centre.municipality_code for centre in registry.centres]
        revealed_before = differencing(lambda f: before.funnel(f)[0], codes, label, args.threshold)
        revealed_after = differencing(reader.funnel, codes, label, args.threshold)
        print(f"  small cells revealed: before {revealed_before}, after {revealed_after}")


if __name__ == "__main__":
    main()
