"""Prometheus metrics of the consent service; labels only from closed sets."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

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
