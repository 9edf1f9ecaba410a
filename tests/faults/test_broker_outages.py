"""The router and the stats worker through repeated broker outages under a steady load.

Six outages of 2 to 15 s, every other one a crash (SIGKILL) rather than a clean stop (the
soak in ``bench/outage_soak.py`` runs twenty and more): after each, both workers must make
progress again within one session timeout of the broker's return, without ever exiting to be
restarted, and at the end every decision fed has reached the statistics exactly once and
every referral its centre's topic exactly once.
"""

from __future__ import annotations

import pytest

from henvis_dev import loadgen
from tests.faults.outages import REGISTRY, WORKERS, OutageLoop
from tests.integration.test_router_delivery import assert_every_referral_on_its_own_centre_topic

OUTAGES_SECONDS = (2, 6, 3, 10, 2, 15)


@pytest.mark.slow
@pytest.mark.kafka
def test_router_and_stats_resume_after_every_broker_outage(tmp_path):
    loop = OutageLoop(tmp_path, session_timeout_seconds=10)
    try:
        loop.start()
        for number, seconds in enumerate(OUTAGES_SECONDS):
            loop.outage(seconds, crash=number % 2 == 1)
            loop.wait_for_progress(timeout=300)
        loop.finish()
        print("\n" + loop.report())

        for number, outage in enumerate(loop.outages, 1):
            for worker in WORKERS:
                assert outage.beyond(worker) <= loop.session_timeout_seconds, (
                    f"{worker} went {outage.beyond(worker):.1f} s without progress after outage {number} ended"
                )
        for worker in WORKERS:
            assert loop.processes[worker].poll() is None, f"{worker} exited"
            lines = loop.log_lines(worker)  # each one JSON object, or this raises
            assert not [line for line in lines if line.get("event") == "input_stuck"]
        # Nothing lost or misplaced, every decision counted once by the statistics (finish()).
        observed = loadgen.observe(loop.kafka, REGISTRY)
        assert_every_referral_on_its_own_centre_topic(observed, loop.delivered())
        # A referral message twice on its topic only where the broker itself says it dropped
        # a committed transaction's markers on that partition (a one-node cluster restarting
        # with a commit in flight; docs/delivery-guarantees.md): never for a reason of ours.
        duplicates = loop.duplicate_referrals()
        skipped = loop.partitions_with_skipped_markers()
        print(f"duplicate referral messages: {len(duplicates)}; partitions with skipped markers: {len(skipped)}")
        unexplained = {
            referral: copies for referral, copies in duplicates.items() if copies[0].partition("@")[0] not in skipped
        }
        assert unexplained == {}
    finally:
        loop.stop()
