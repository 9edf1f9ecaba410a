"""Broker outages soak: the router and the stats worker through many broker stops and starts.

    .venv/bin/python bench/outage_soak.py [--outages 24] [--seed 7] [--rate 25] [--session-timeout 10]

Starts its own broker, a router and a stats worker, feeds decisions at a steady rate, and
then stops the broker over and over: outages of 2 to 20 s (seeded), every other one a crash
(SIGKILL) instead of a clean stop.  After each outage it waits until both workers make
progress again.  Prints, per outage, how long each worker went without progress after the
broker was back (the baseline to compare with is the session timeout), the longest such gap,
and at the end whether every decision reached the statistics and every referral its centre's
topic exactly once.  The CI-sized loop is ``tests/faults/test_broker_outages.py``.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import machine_line

from henvis_dev import loadgen
from tests.faults.outages import REGISTRY, OutageLoop


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--outages", type=int, default=24)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--rate", type=float, default=25.0, help="decisions per second fed throughout")
    parser.add_argument("--session-timeout", type=float, default=10.0)
    args = parser.parse_args(argv)

    print(f"Outage soak   {machine_line()}")
    rng = random.Random(args.seed)
    loop = OutageLoop(Path(tempfile.mkdtemp(prefix="henvis-outage-soak-")), args.session_timeout, per_second=args.rate)
    try:
        loop.start()
        for number in range(1, args.outages + 1):
            seconds, crash = rng.uniform(2, 20), number % 2 == 0
            outage = loop.outage(seconds, crash=crash)
            print(
                f"  outage {number:>2} ({'crash' if crash else 'stop '}, {seconds:4.1f} s asked, down {outage.down_for:4.1f} s): "
                + ", ".join(f"{worker} +{outage.beyond(worker):.1f} s" for worker in outage.resumed_after),
                flush=True,
            )
            loop.wait_for_progress(timeout=600)
        loop.finish()
        print(loop.report())
        observed = loadgen.observe(loop.kafka, REGISTRY)
        expected = loop.delivered()
        missing = set(expected.referrals) - {rid for ids in observed.issued.values() for rid in ids}
        restarted = [worker for worker, process in loop.processes.items() if process.poll() is not None]
        # As in the CI test: a copy is explained only where the broker logged that it
        # skipped a committed transaction's markers on that partition (docs/delivery-guarantees.md).
        skipped = loop.partitions_with_skipped_markers()
        duplicates = loop.duplicate_referrals()
        unexplained = [rid for rid, copies in duplicates.items() if copies[0].partition("@")[0] not in skipped]
        print(
            f"  fed {loop.feeder.sent} decisions; referrals expected {len(expected.referrals)}, missing "
            f"{len(missing)}, misplaced {len(observed.misplaced(expected.referrals))}; "
            f"withdrawals before their referral {len(observed.withdrawn_before_issued)}; "
            f"workers that exited {restarted or 'none'}\n"
            f"  referrals on their topic twice: {len(duplicates)} ({len(duplicates) - len(unexplained)} on partitions "
            f"whose markers the broker logged as skipped, {len(unexplained)} otherwise)"
        )
    finally:
        loop.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
