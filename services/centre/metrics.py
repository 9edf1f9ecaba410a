"""The centre's Prometheus metrics. Labels are centre slugs and outcome codes only.

Open and overdue counts are read from the database at scrape time, so every replica (and
the worker) reports the same truth without keeping state of its own.
"""

from __future__ import annotations

import structlog
from prometheus_client import REGISTRY, Counter
from prometheus_client.core import GaugeMetricFamily
from sqlalchemy.engine import Engine

from henvis.services.centre.store_referrals import centre_counts

log = structlog.get_logger(__name__)

OUTCOMES_RECORDED = Counter(
    "henvis_centre_outcomes_total",
    "Outcomes recorded by centres (including withdrawal acknowledgements)",
    ["centre", "outcome"],
)
REFERRALS_INGESTED = Counter(
    "henvis_centre_referrals_received_total", "Referral events consumed by the inbox worker", ["centre", "result"]
)


class InboxCollector:
    """Gauges ``henvis_centre_open_referrals`` and ``henvis_centre_overdue_referrals`` per centre."""

    def __init__(self) -> None:
        self.engine: Engine | None = None
        self.centres: list[str] = []

    def collect(self):
        open_family = GaugeMetricFamily(
            "henvis_centre_open_referrals", "Open referrals (overdue included)", labels=["centre"]
        )
        overdue_family = GaugeMetricFamily(
            "henvis_centre_overdue_referrals", "Open referrals past a deadline", labels=["centre"]
        )
        if self.engine is not None:
            try:
                counts = centre_counts(self.engine)
            except Exception as exc:  # noqa: BLE001 - a scrape must not fail because the database blinked
                log.warning("metrics_counts_failed", error_type=type(exc).__name__)
                counts = None
            if counts is not None:
                for centre in sorted(set(self.centres) | set(counts)):
                    open_count, overdue = counts.get(centre, (0, 0))
                    open_family.add_metric([centre], open_count)
                    overdue_family.add_metric([centre], overdue)
        yield open_family
        yield overdue_family

    def describe(self):
        return []


INBOX = InboxCollector()
REGISTRY.register(INBOX)


def watch_inbox(engine: Engine, centres: list[str]) -> None:
    """Point the inbox gauges at this process's database."""
    INBOX.engine = engine
    INBOX.centres = list(centres)
