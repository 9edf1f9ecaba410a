"""The router's adapter: ``consent.decisions.v2`` → :mod:`.domain` → one Kafka transaction.

:class:`henvis.stream.TransactionalProcessor` does the delivery (docs/delivery-guarantees.md):
per batch and input partition, every output (centre topics, ``referral.facts.v1``,
``henvis.manual.v2``), the changed case states and the next input offset (both on the
changelog) are written in one transaction, which commits or leaves nothing behind.  This
module only translates:

* records → :func:`domain.handle_message`, each message seeing the state the earlier ones in
  the batch left behind;
* the domain's outputs → records for the real topic names; its states → changelog values;
* after the commit, metrics and log lines (ids, slugs and reason codes only).

State (case key → :class:`domain.CaseState`) lives per input partition: the input is keyed
by the case, so a case, its events and its state are always on one partition.
"""

from __future__ import annotations

from collections import Counter as Tally
from collections.abc import Sequence
from datetime import timedelta

import structlog
from aiokafka.structs import ConsumerRecord
from prometheus_client import Counter, Histogram

from henvis.kafka import topic_name
from henvis.registry import Registry
from henvis.schemas.events import utcnow
from henvis.schemas.topics import CONSENT_DECISIONS
from henvis.services.router import domain
from henvis.services.router.settings import RouterSettings
from henvis.stream import Effects, Output, StateView, StreamOptions, TransactionalProcessor

log = structlog.get_logger("henvis.router")

REFERRALS = Counter("henvis_router_referrals_total", "Referrals issued to a centre's topic", ["centre"])
MANUAL = Counter("henvis_router_manual_total", "Events sent to manual handling", ["reason"])
DUPLICATES = Counter("henvis_router_duplicates_dropped_total", "Input events dropped as already processed")
LATENCY = Histogram(
    "henvis_router_latency_seconds",
    "From the consent's occurred_at to the referral committed on the centre's topic",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 3600, 86400),
)


class RouterLogic:
    """Decides a batch with the pure domain; no I/O (the processor does that)."""

    def __init__(self, settings: RouterSettings, registry: Registry):
        self.registry = registry
        self.wait = timedelta(seconds=settings.withdrawal_wait_seconds)
        self._topics: dict[str, str] = {}
        self._kafka = settings.kafka

    def decide(
        self, partition: int, records: Sequence[ConsumerRecord], state: StateView[domain.CaseState]
    ) -> Effects[domain.CaseState]:
        changed: dict[str, domain.CaseState] = {}

        def lookup(key: str) -> domain.CaseState | None:
            return changed[key] if key in changed else state.get(key)

        ctx = domain.Context(registry=self.registry, now=utcnow(), partition=partition)
        results = []
        for record in records:
            try:
                result = domain.handle_message(record.value, lookup, ctx)
            except Exception as exc:  # noqa: BLE001 - a bug must not lose or block the message
                log.error("routing_failed", error_type=type(exc).__name__, partition=partition, offset=record.offset)
                result = domain.invalid_message(
                    record.value, ctx, f"router could not process it ({type(exc).__name__})"
                )
            changed.update(result.state)
            results.append(result)
        return self._effects(results, changed)

    def tick(self, partition: int, state: StateView[domain.CaseState]) -> Effects[domain.CaseState] | None:
        """Pending withdrawals that waited too long go to manual handling."""
        ctx = domain.Context(registry=self.registry, now=utcnow(), partition=partition)
        results, changed = [], {}
        for key, value in state.items():
            if value.pending_withdrawal is None:
                continue
            result = domain.expire_pending(key, value, ctx, self.wait)
            if result is not None:
                changed.update(result.state)
                results.append(result)
        return self._effects(results, changed) if results else None

    def encode_state(self, value: domain.CaseState) -> bytes:
        return value.model_dump_json().encode()

    def decode_state(self, raw: bytes) -> domain.CaseState:
        return domain.CaseState.model_validate_json(raw)

    # ------------------------------------------------------------ translation

    def _effects(self, results: list[domain.Result], changed: dict[str, domain.CaseState]) -> Effects[domain.CaseState]:
        outputs = [
            Output(self._topic(out.topic), out.key, out.event.to_bytes())
            for result in results
            for out in result.outputs
        ]
        return Effects(outputs=outputs, state=dict(changed), on_commit=_Observations(results).record)

    def _topic(self, base: str) -> str:
        name = self._topics.get(base)
        if name is None:
            name = self._topics[base] = topic_name(base, self._kafka)
        return name


class _Observations:
    """What a batch's metrics and log lines need, kept until its transaction commits: ids,
    slugs and reason codes, not the events (which would keep their personal data in memory,
    and give the garbage collector a large heap to scan while commits are in flight)."""

    def __init__(self, results: list[domain.Result]):
        self.duplicates = sum(result.duplicate for result in results)
        self.referrals = [
            (referral.centre, referral.occurred_at) for result in results for referral in result.referrals()
        ]
        self.manual = [
            (
                manual.reason.value,
                str(manual.source_event_id) if manual.source_event_id else None,
                str(manual.referral_id) if manual.referral_id else None,
            )
            for result in results
            for manual in result.manual()
        ]

    def record(self) -> None:
        now = utcnow()
        for centre, count in Tally(centre for centre, _ in self.referrals).items():
            REFERRALS.labels(centre=centre).inc(count)
        for _, occurred_at in self.referrals:
            LATENCY.observe(max(0.0, (now - occurred_at).total_seconds()))
        for reason, source_event_id, referral_id in self.manual:
            MANUAL.labels(reason=reason).inc()
            log.info("manual_handling", reason=reason, source_event_id=source_event_id, referral_id=referral_id)
        if self.duplicates:
            DUPLICATES.inc(self.duplicates)


def build_router(settings: RouterSettings, logic: RouterLogic) -> TransactionalProcessor[domain.CaseState]:
    """The router process's processor running ``logic``, wired to its topics."""
    options = StreamOptions.of(settings, topic_name(CONSENT_DECISIONS.name, settings.kafka))
    return TransactionalProcessor(
        options,
        logic,
        settings.changelog_topic,
        tick_seconds=settings.check_interval_seconds,
        group_commit_seconds=settings.group_commit_seconds,
    )
