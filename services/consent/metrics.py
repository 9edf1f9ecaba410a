"""Prometheus metrics of the consent service; labels only from closed sets."""

from __future__ import annotations

import math
from collections.abc import Callable

from prometheus_client import Counter, Gauge

from henvis.services.consent.delivery import Backlog

DECISIONS_ACCEPTED = Counter(
    "henvis_consent_decisions_accepted_total",
    "Events accepted for the first time (replays not counted), by decision",
    ["decision"],
)
REJECTED = Counter(
    "henvis_consent_rejected_total",
    "Requests to the police endpoints that were refused, by reason",
    ["reason"],
)
OUTBOX_BACKLOG = Gauge("henvis_consent_outbox_backlog", "Outbox rows not yet published to Kafka")
OUTBOX_OLDEST_AGE = Gauge(
    "henvis_consent_outbox_oldest_age_seconds", "Age of the oldest outbox row not yet published (0 when none)"
)
PUBLISH_ERRORS = Counter(
    "henvis_consent_publish_errors_total", "Outbox rows the relay failed to publish (they are retried)"
)
PUBLISHED = Counter("henvis_consent_published_total", "Outbox rows the broker acknowledged")

#: ``decision`` label value of each event type.
DECISION_LABEL = {"consent.given": "given", "consent.declined": "declined", "consent.withdrawn": "withdrawn"}


def record_outbox_backlog(backlog: Backlog) -> None:
    """Set the backlog gauges to what was just read (the relay, between rounds)."""
    OUTBOX_BACKLOG.set(backlog.unsent)
    OUTBOX_OLDEST_AGE.set(backlog.oldest_age_seconds)


def watch_outbox_backlog(read_backlog: Callable[[], Backlog]) -> None:
    """Read the backlog gauges through ``read_backlog`` at every scrape (the API process)."""
    OUTBOX_BACKLOG.set_function(lambda: _backlog_value(read_backlog, "unsent"))
    OUTBOX_OLDEST_AGE.set_function(lambda: _backlog_value(read_backlog, "oldest_age_seconds"))


def _backlog_value(read_backlog: Callable[[], Backlog], attribute: str) -> float:
    try:
        return float(getattr(read_backlog(), attribute))
    except Exception:  # noqa: BLE001 - a scrape must not fail because the database is down
        return math.nan
