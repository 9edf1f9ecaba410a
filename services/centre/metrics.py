"""The centre's Prometheus metrics. Labels are centre slugs and outcome codes only.

Open and overdue counts are read from the database at scrape time, so every replica (and
the worker) reports the same truth without keeping state of its own.
"""

from __future__ import annotations

import structlog
from prometheus_client import REGISTRY, Counter
from prometheus_client.core import GaugeMetricFamily
from sqlalchemy.engine import Engine

from henvis.services.centre.database import utcnow
from henvis.services.centre.domain_alerts import DEADLINES, WorkingHours, deadline_counts
from henvis.services.centre.store_referrals import centre_counts, open_referrals

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


class DeadlineCollector:
    """Gauges ``henvis_centre_referrals_due_soon`` and ``henvis_centre_referrals_overdue``.

    Per centre and deadline (``contact``, ``treatment``): open referrals with no more than
    the configured working hours left, and those past the deadline. Alerts fire on these
    before a deadline is missed (helm/henvis/templates/prometheusrule.yaml).
    """

    def __init__(self) -> None:
        self.engine: Engine | None = None
        self.centres: list[str] = []
        self.hours = WorkingHours()

    def collect(self):
        due_soon = GaugeMetricFamily(
            "henvis_centre_referrals_due_soon",
            "Open referrals whose deadline is within the configured working hours (not yet overdue)",
            labels=["centre", "deadline"],
        )
        overdue = GaugeMetricFamily(
            "henvis_centre_referrals_overdue", "Open referrals past the deadline", labels=["centre", "deadline"]
        )
        if self.engine is not None:
            try:
                counts = deadline_counts(open_referrals(self.engine), utcnow(), self.hours, self.centres)
            except Exception as exc:  # noqa: BLE001 - a scrape must not fail because the database blinked
                log.warning("metrics_deadlines_failed", error_type=type(exc).__name__)
                counts = {}
            for centre in sorted(counts):
                for deadline in DEADLINES:
                    due_soon.add_metric([centre, deadline], counts[centre].due_soon[deadline])
                    overdue.add_metric([centre, deadline], counts[centre].overdue[deadline])
        yield due_soon
        yield overdue

    def describe(self):
        return []


INBOX = InboxCollector()
REGISTRY.register(INBOX)
DEADLINES_DUE = DeadlineCollector()
REGISTRY.register(DEADLINES_DUE)


def watch_inbox(engine: Engine, centres: list[str], hours: WorkingHours | None = None) -> None:
    """Point the inbox and deadline gauges at this process's database."""
    INBOX.engine = engine
    INBOX.centres = list(centres)
    DEADLINES_DUE.engine = engine
    DEADLINES_DUE.centres = list(centres)
    DEADLINES_DUE.hours = hours or WorkingHours()
