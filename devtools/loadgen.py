"""Synthetic consent streams for the router's integration tests and benchmark.

Produces a realistic mix of decisions straight onto ``consent.decisions.v2`` as the consent
relay publishes them (keyed by the case pseudonym, personal data sealed under a fresh data key
per consent, kept in :attr:`Expected.data_keys`) and reads the router's output topics back, so a test
can check "each centre topic holds exactly its residents' referrals" without any other
service running.  Synthetic persons only: no real personal data.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TextIO, TypeVar

from kafka import KafkaConsumer, TopicPartition

from henvis.kafka import consumer_config, make_producer, topic_name
from henvis.registry import Registry
from henvis.schemas.events import (
    ConsentDeclined,
    ConsentDeclinedV2,
    ConsentGiven,
    ConsentGivenV2,
    ConsentWithdrawn,
    ConsentWithdrawnV2,
    Event,
    ManualHandling,
    Offence,
    PersonalData,
    ReferralFact,
    ReferralIssued,
    ReferralWithdrawn,
    WithdrawalReason,
    parse_event,
    referral_id_for,
)
from henvis.schemas.person import Person
from henvis.schemas.topics import CONSENT_DECISIONS, MANUAL_HANDLING, REFERRAL_FACTS
from henvis.settings import KafkaSettings
from henvis.shredding import CasePseudonyms, new_data_key, seal_personal_data

#: The load generator's own pseudonym key (the consent service's is a deployment secret).
PSEUDONYMS = CasePseudonyms(b"henvis-loadgen-case-pseudonym-key")

OUTSIDE_DISTRICT = ["101", "751", "851", "461", "630"]
_FIRST = ["Anna", "Jens", "Mette", "Lars", "Sofie", "Mikkel", "Ida", "Rasmus"]
_LAST = ["Nielsen", "Jensen", "Hansen", "Pedersen", "Andersen", "Christensen"]
#: The offences drawn from, in this order (the seeded streams depend on it).
_OFFENCES = [Offence.DRINK_DRIVING, Offence.DRUG_DRIVING, Offence.DRINK_AND_DRUG_DRIVING]

_EventT = TypeVar("_EventT", bound=Event)


@dataclass
class Expected:
    """What the router must make of a generated stream."""

    messages: list[tuple[bytes, bytes]] = field(default_factory=list)
    #: referral_id -> centre slug, for every consent that must reach a centre
    referrals: dict[uuid.UUID, str] = field(default_factory=dict)
    #: referral_id -> centre slug, for the referrals later withdrawn
    withdrawals: dict[uuid.UUID, str] = field(default_factory=dict)
    manual: Counter = field(default_factory=Counter)
    facts: Counter = field(default_factory=Counter)
    #: referral_id -> the data key its personal data is sealed under
    data_keys: dict[uuid.UUID, bytes] = field(default_factory=dict)


def mixed_decisions(count: int, registry: Registry, seed: int = 4) -> Expected:
    """``count`` decisions across all centres: mostly routable consents, some preferred
    centres, declines, outside-district, no-municipality and withdrawals after consent."""
    rng = random.Random(seed)
    expected = Expected()
    centres = list(registry.centres)
    base = datetime(2024, 3, 1, 8, tzinfo=UTC)
    given_cases: list[tuple[str, uuid.UUID, str | None]] = []
    event: ConsentGiven | ConsentDeclined | ConsentWithdrawn
    for index in range(count):
        occurred_at = base + timedelta(minutes=7 * index)
        case_ref = f"4100-{rng.randrange(10000, 99999)}-{index:05d}-24"
        roll = rng.random()
        if given_cases and roll < 0.03:
            # A withdrawal of an earlier consent (same case_ref, so same partition, after it).
            case_ref, referral_id, slug = given_cases.pop(rng.randrange(len(given_cases)))
            event = ConsentWithdrawn(
                event_id=rng_uuid(rng),
                occurred_at=occurred_at,
                case_ref=case_ref,
                reason=WithdrawalReason.PERSON_CHANGED_MIND,
            )
            if slug:
                expected.withdrawals[referral_id] = slug
            else:
                expected.manual["withdrawal_unmatched"] += 1
            expected.facts["withdrawn"] += 1
        elif roll < 0.18:
            centre = rng.choice(centres)
            event = ConsentDeclined(
                event_id=rng_uuid(rng),
                occurred_at=occurred_at,
                case_ref=case_ref,
                offence=rng.choice(_OFFENCES),
                charged_on=occurred_at.date() - timedelta(days=rng.randrange(0, 3)),
                municipality_code=centre.municipality_code,
            )
            expected.facts["declined"] += 1
        else:
            preferred = None
            if roll < 0.22:
                code, slug, reason = rng.choice(OUTSIDE_DISTRICT), None, "outside_district"
            elif roll < 0.24:
                code, slug, reason = None, None, "no_municipality"
            else:
                centre = rng.choice(centres)
                code, slug, reason = centre.municipality_code, centre.slug, None
                if roll > 0.95:
                    preferred = rng.choice(centres).slug
                    slug = preferred
            event = ConsentGiven(
                event_id=rng_uuid(rng),
                occurred_at=occurred_at,
                case_ref=case_ref,
                offence=rng.choice(_OFFENCES),
                charged_on=occurred_at.date() - timedelta(days=rng.randrange(0, 3)),
                municipality_code=code,
                preferred_centre=preferred,
                person=Person(
                    full_name=f"{rng.choice(_FIRST)} {rng.choice(_LAST)}",
                    phone=f"+45{rng.randrange(20000000, 99999999)}",
                ),
                consent_text_version="v1",
                recorded_by="loadgen",
            )
            referral_id = referral_id_for(event.event_id)
            if slug:
                expected.referrals[referral_id] = slug
            else:
                expected.manual[reason] += 1
            expected.facts["accepted"] += 1
            given_cases.append((case_ref, referral_id, slug))
        published = sealed(event, expected.data_keys)
        expected.messages.append((published.kafka_key(), published.to_bytes()))
    return expected


def sealed(
    event: ConsentGiven | ConsentDeclined | ConsentWithdrawn, data_keys: dict[uuid.UUID, bytes]
) -> ConsentGivenV2 | ConsentDeclinedV2 | ConsentWithdrawnV2:
    """``event`` as the consent relay publishes it: the case by pseudonym, a consent's personal data
    sealed under a new data key (added to ``data_keys``)."""
    assert event.case_ref is not None  # the generator always names the case
    common: dict[str, object] = {
        "event_id": event.event_id,
        "occurred_at": event.occurred_at,
        "case_pseudonym": PSEUDONYMS(event.case_ref),
    }
    if isinstance(event, ConsentWithdrawn):
        return ConsentWithdrawnV2.model_validate({**common, "referral_id": event.referral_id, "reason": event.reason})
    common |= {"offence": event.offence, "charged_on": event.charged_on, "municipality_code": event.municipality_code}
    if isinstance(event, ConsentDeclined):
        return ConsentDeclinedV2.model_validate({**common, "recorded_by": event.recorded_by})
    referral_id = referral_id_for(event.event_id)
    data_keys[referral_id] = new_data_key()
    personal = PersonalData(case_ref=event.case_ref, person=event.person).model_dump_json().encode()
    return ConsentGivenV2.model_validate(
        {
            **common,
            "preferred_centre": event.preferred_centre,
            "personal": seal_personal_data(data_keys[referral_id], referral_id, personal),
            "consent_text_version": event.consent_text_version,
            "recorded_by": event.recorded_by,
        }
    )


def rng_uuid(rng: random.Random) -> uuid.UUID:
    return uuid.UUID(int=rng.getrandbits(128), version=4)


def produce(settings: KafkaSettings, messages: list[tuple[bytes, bytes]]) -> None:
    """Publish to ``consent.decisions.v2`` the way the consent relay does (idempotent, acks=all)."""
    producer = make_producer(settings, "henvis-loadgen")
    topic = topic_name(CONSENT_DECISIONS.name, settings)
    try:
        for key, value in messages:
            producer.send(topic, key=key, value=value)
        producer.flush()
    finally:
        producer.close()


class Feeder(threading.Thread):
    """Publishes ``messages`` to ``consent.decisions.v2`` at a steady rate in the background,
    as the consent relay would under load, so that kills and outages fall mid-stream."""

    def __init__(
        self,
        settings: KafkaSettings,
        messages: list[tuple[bytes, bytes]],
        per_second: float,
        hold_after: int | None = None,
    ):
        """``hold_after``: feed that many messages, then wait for :meth:`release` before the
        rest, so a test's next step falls mid-stream however slowly the machine starts it."""
        super().__init__(name="henvis-loadgen-feeder", daemon=True)
        self.settings = settings
        self.messages = messages
        self.per_second = per_second
        self.hold_after = hold_after
        self.sent = 0
        self.error: BaseException | None = None
        self._stopping = threading.Event()
        self._released = threading.Event()

    def run(self) -> None:
        producer = make_producer(self.settings, "henvis-loadgen-feeder")
        topic = topic_name(CONSENT_DECISIONS.name, self.settings)
        started = time.monotonic()
        try:
            for index, (key, value) in enumerate(self.messages):
                if index == self.hold_after:
                    producer.flush()
                    while not self._released.wait(0.1):
                        if self._stopping.is_set():
                            return
                    started = time.monotonic() - index / self.per_second  # the pace goes on from here
                delay = started + index / self.per_second - time.monotonic()
                if self._stopping.wait(delay) if delay > 0 else self._stopping.is_set():
                    break
                producer.send(topic, key=key, value=value)
                self.sent = index + 1
            producer.flush()
        except BaseException as exc:  # noqa: BLE001 - reported by finish()
            self.error = exc
        finally:
            producer.close()

    def running(self) -> bool:
        return self.is_alive()

    def release(self) -> None:
        """Feed the messages held back by ``hold_after``."""
        self._released.set()

    def stop(self, timeout: float = 600) -> None:
        """Stop feeding now; return once what was sent is on the broker."""
        self._stopping.set()
        self.finish(timeout)

    def finish(self, timeout: float = 600) -> None:
        """Wait until every message is on the broker; raise what the feeding raised."""
        self.join(timeout)
        if self.is_alive():
            raise TimeoutError(f"fed {self.sent} of {len(self.messages)} messages in {timeout} s")
        if self.error is not None:
            raise self.error


def read_all(settings: KafkaSettings, topic: str) -> list[tuple[bytes | None, bytes]]:
    """Every message currently on ``topic`` (all partitions, from the beginning to the end)."""
    return [(record.key, record.value) for record in read_records(settings, topic)]


def read_records(settings: KafkaSettings, topic: str) -> list:
    """Every record currently on ``topic`` (``read_committed``), each partition in order."""
    config = consumer_config(settings, group_id=None, client_id="henvis-loadgen-reader")
    config.update(enable_auto_commit=False, consumer_timeout_ms=1000)
    consumer = KafkaConsumer(**config)
    try:
        partitions = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in partitions]
        if not tps:
            return []
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        end = consumer.end_offsets(tps)
        out = []
        while any(consumer.position(tp) < end[tp] for tp in tps):
            for records in consumer.poll(timeout_ms=500).values():
                out.extend(records)
        return out
    finally:
        consumer.close()


@dataclass
class Observed:
    #: centre topic slug -> list of referral ids of referral.issued messages (with repeats)
    issued: dict[str, list[uuid.UUID]]
    #: centre topic slug -> referral ids of referral.withdrawn messages
    withdrawn: dict[str, list[uuid.UUID]]
    #: referral_id -> centre field of the event, for the "centre field matches topic" check
    centre_field_mismatch: int
    manual: Counter
    facts: Counter
    #: referral ids whose referral.withdrawn came before their referral.issued on the topic
    withdrawn_before_issued: list[uuid.UUID] = field(default_factory=list)

    def distinct_referrals(self) -> dict[uuid.UUID, str]:
        return {rid: slug for slug, ids in self.issued.items() for rid in ids}

    def duplicate_messages(self) -> int:
        return sum(len(ids) - len(set(ids)) for ids in self.issued.values())

    def misplaced(self, expected: dict[uuid.UUID, str]) -> list[uuid.UUID]:
        return [rid for slug, ids in self.issued.items() for rid in ids if expected.get(rid) != slug]


def observe(settings: KafkaSettings, registry: Registry) -> Observed:
    """Read every output topic of the router and summarise it."""
    from henvis.kafka import centre_topic_name

    issued: dict[str, list[uuid.UUID]] = defaultdict(list)
    withdrawn: dict[str, list[uuid.UUID]] = defaultdict(list)
    out_of_order: list[uuid.UUID] = []
    mismatch = 0
    for slug in registry.slugs:
        seen_issued: set[uuid.UUID] = set()
        topic = centre_topic_name(slug, settings, registry)
        # One referral's messages share a key, so a partition and its order; read_all keeps
        # each partition's order.
        for _key, value in read_all(settings, topic):
            referral = _centre_event(topic, value)
            if referral.centre != slug:
                mismatch += 1
            if isinstance(referral, ReferralIssued):
                issued[slug].append(referral.referral_id)
                seen_issued.add(referral.referral_id)
            else:
                withdrawn[slug].append(referral.referral_id)
                if referral.referral_id not in seen_issued:
                    out_of_order.append(referral.referral_id)
    manual_ids: dict[uuid.UUID, str] = {}
    manual_topic = topic_name(MANUAL_HANDLING.name, settings)
    for _key, value in read_all(settings, manual_topic):
        manual = _parse_on(manual_topic, value, ManualHandling)
        manual_ids[manual.event_id] = manual.reason.value
    fact_ids: dict[uuid.UUID, str] = {}
    facts_topic = topic_name(REFERRAL_FACTS.name, settings)
    for _key, value in read_all(settings, facts_topic):
        fact = _parse_on(facts_topic, value, ReferralFact)
        fact_ids[fact.event_id] = fact.decision.value
    return Observed(
        issued=dict(issued),
        withdrawn=dict(withdrawn),
        centre_field_mismatch=mismatch,
        manual=Counter(manual_ids.values()),
        facts=Counter(fact_ids.values()),
        withdrawn_before_issued=out_of_order,
    )


def _parse_on(topic: str, value: bytes, kind: type[_EventT]) -> _EventT:
    """The event in ``value``, which must be a ``kind``: the only event ``topic`` carries."""
    event = parse_event(value)
    if not isinstance(event, kind):
        raise _unexpected(topic, event, kind.__name__)
    return event


def _centre_event(topic: str, value: bytes) -> ReferralIssued | ReferralWithdrawn:
    """The event in ``value`` from a centre topic, which carries issued and withdrawn referrals only."""
    event = parse_event(value)
    if not isinstance(event, ReferralIssued | ReferralWithdrawn):
        raise _unexpected(topic, event, "ReferralIssued or ReferralWithdrawn")
    return event


def _unexpected(topic: str, event: Event, expected: str) -> TypeError:
    return TypeError(f"{topic} holds a {type(event).__name__} (event {event.event_id}); expected {expected}")


def unsettled_records(settings: KafkaSettings, topics: list[str]) -> int:
    """Records on ``topics`` a ``read_committed`` reader cannot see yet: written in a transaction
    whose commit (or abort) markers have not landed.  0 once every transaction on them is
    complete.  The router's group offset is copied after its transactions commit, so "all
    input committed" can be read a moment before the last outputs are visible."""
    config = consumer_config(settings, group_id=None, client_id="henvis-loadgen-settled")
    committed = KafkaConsumer(**config)
    uncommitted = KafkaConsumer(**{**config, "isolation_level": "read_uncommitted"})
    try:
        tps = [TopicPartition(topic, p) for topic in topics for p in committed.partitions_for_topic(topic) or set()]
        visible, written = committed.end_offsets(tps), uncommitted.end_offsets(tps)
        return sum(written[tp] - visible[tp] for tp in tps)
    finally:
        committed.close()
        uncommitted.close()


def committed_total(settings: KafkaSettings, group_id: str) -> int:
    """How many messages of ``consent.decisions.v2`` the group has committed so far."""
    topic = topic_name(CONSENT_DECISIONS.name, settings)
    consumer = KafkaConsumer(**consumer_config(settings, group_id=group_id, client_id="henvis-loadgen-lag"))
    try:
        tps = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or set()]
        return sum(consumer.committed(tp) or 0 for tp in tps)
    finally:
        consumer.close()


def committed_lag(settings: KafkaSettings, group_id: str) -> int | None:
    """Messages on ``consent.decisions.v2`` the group has not committed yet (None: no commits)."""
    topic = topic_name(CONSENT_DECISIONS.name, settings)
    # A consumer of the group that never subscribes: it only asks for the group's offsets.
    consumer = KafkaConsumer(**consumer_config(settings, group_id=group_id, client_id="henvis-loadgen-lag"))
    try:
        tps = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or set()]
        end = consumer.end_offsets(tps)
        committed = {tp: consumer.committed(tp) for tp in tps}
        if all(offset is None for offset in committed.values()):
            return None
        return sum(end[tp] - (committed[tp] or 0) for tp in tps)
    finally:
        consumer.close()


class RouterProcess:
    """``henvis router worker`` as a child process, the way the supervisor runs it."""

    def __init__(self, env: dict[str, str], log_path: str | os.PathLike[str], name: str = "router"):
        self.env = env
        self.log_path = log_path
        self.name = name
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self._log: TextIO | None = None

    def start(self) -> RouterProcess:
        henvis = Path(sys.executable).with_name("henvis")
        self._log = open(self.log_path, "a")  # noqa: SIM115 - closed in stop()
        self._log_offset = Path(self.log_path).stat().st_size
        self.process = subprocess.Popen(
            [str(henvis), "router", "worker"],
            env={**os.environ, **self.env},
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        self.starts += 1
        return self

    def _started(self) -> subprocess.Popen[bytes]:
        """The child process; only after start()."""
        if self.process is None:
            raise RuntimeError(f"{self.name} has not been started")
        return self.process

    @property
    def pid(self) -> int:
        return self._started().pid

    def log_lines(self) -> list[dict[str, Any]]:
        """JSON log lines of the current run."""
        text = Path(self.log_path).read_text(errors="replace")[self._log_offset :]
        lines = []
        for line in text.splitlines():
            try:
                lines.append(json.loads(line))
            except ValueError:
                lines.append({"event": line})
        return lines

    def is_ready(self) -> bool:
        if self.process is not None and self.process.poll() is not None:
            raise RuntimeError(f"{self.name} exited with {self.process.returncode}")
        return any(line.get("event") == "worker_ready" for line in self.log_lines())

    def last_assignment(self) -> list[int] | None:
        assigned = [line for line in self.log_lines() if line.get("event") in ("worker_ready", "partitions_assigned")]
        return assigned[-1].get("partitions") if assigned else None

    def pause(self) -> None:
        """SIGSTOP: the process freezes mid-whatever, as a long GC pause or a stalled VM would."""
        self._started().send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        self._started().send_signal(signal.SIGCONT)

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()
        self._close()

    def stop(self, timeout: float = 60) -> int | None:
        """SIGTERM and wait; returns the exit code (killed if it does not stop)."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._close()
        return self.process.returncode

    def _close(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None
