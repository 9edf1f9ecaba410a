"""The router and the stats worker through repeated broker outages under a steady load.

Six outages of 2 to 15 s, every other one a crash (SIGKILL) rather than a clean stop (the
soak in ``bench/outage_soak.py`` runs twenty and more): after each, both workers must make
progress again within one session timeout of the broker's return, without ever exiting to be
restarted, and at the end every decision fed has reached the statistics exactly once and
every referral its centre's topic exactly once.
"""

from __future__ import annotations

import pytest

from henvis.services.router import loadgen
from tests.faults.outages import REGISTRY, WORKERS, OutageLoop

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
        observed = loadgen.observe(loop.kafka, REGISTRY)
        assert observed.duplicate_messages() == 0
        assert observed.withdrawn_before_issued == []
    finally:
        loop.stop()
