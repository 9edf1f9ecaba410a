"""The whole pipeline under a steady load while its parts are killed and its infrastructure stopped.

One seeded run (``HENVIS_FAULT_SEED``, default 8; ``HENVIS_FAULT_RATE`` decisions/s, default
25) posts consents, declines, outside-district and no-address consents and withdrawals to the
consent API and, meanwhile, in a seeded random order at moments chosen by the load's own
progress:

1. SIGKILLs the consent relay, the router, the centre worker and the stats worker one at a
   time, each restarted after a random stretch of load;
2. SIGKILLs all four together and restarts them together;
3. stops the Kafka broker under load and starts it again (same data);
4. stops the consent service's PostgreSQL under load and starts it again: the consent API
   must answer 503 meanwhile and recover by itself.

Then the load stops, every event without a 2xx is sent again (as a police system would) and
the suite waits for the pipeline to drain. The tests below each check one part of the
invariant on the drained state, reading the centre database, the manual-handling topic, the
stats API and the consent database directly. The figures (kills, restarts, totals) are
printed and written to ``<run dir>/fault-summary.json``.
"""

from __future__ import annotations

import json
import os
import random
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field

import httpx
import pytest
import sqlalchemy as sa
from kafka import KafkaConsumer, TopicPartition

from henvis.db import make_engine
from henvis.schemas.events import ManualHandling, ManualReason, parse_event
from henvis.schemas.topics import MANUAL_HANDLING
from henvis.services.centre.models import PERSONAL_COLUMNS
from tests.faults.conftest import WORKERS, FaultPipeline
from tests.faults.load import (
    ACCEPTED,
    DECLINED,
    NO_MUNICIPALITY,
    OUTSIDE_DISTRICT,
    WITHDRAWAL,
    LoadGenerator,
    Submission,
)
from tests.helpers import wait_until

pytestmark = [pytest.mark.slow, pytest.mark.kafka, pytest.mark.postgres]

SEED = int(os.environ.get("HENVIS_FAULT_SEED", "8"))
RATE = float(os.environ.get("HENVIS_FAULT_RATE", "25"))
READY_TIMEOUT = 180  # generous: two shared cores
DRAIN_TIMEOUT = 300


def is_2xx(answer) -> bool:
    return isinstance(answer, int) and 200 <= answer < 300


# ---------------------------------------------------------------------- reading the outcome


class TopicReader:
    """Reads a whole topic from the beginning, then whatever was added since the last read."""

    def __init__(self, bootstrap: str, topic: str):
        self.consumer = KafkaConsumer(
            bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False, isolation_level="read_committed"
        )
        partitions = wait_until(
            lambda: self.consumer.partitions_for_topic(topic), timeout=60, message=f"topic {topic} has no partitions"
        )
        self.partitions = [TopicPartition(topic, partition) for partition in sorted(partitions)]
        self.consumer.assign(self.partitions)
        self.consumer.seek_to_beginning(*self.partitions)
        self.values: list[bytes] = []

    def read_to_end(self) -> list[bytes]:
        end = self.consumer.end_offsets(self.partitions)
        while any(self.consumer.position(tp) < end[tp] for tp in self.partitions):
            for records in self.consumer.poll(timeout_ms=500).values():
                self.values.extend(record.value for record in records)
        return self.values

    def close(self) -> None:
        self.consumer.close()


@dataclass
class Snapshot:
    inbox: dict[str, dict]  # referral_id -> centre database row
    manual: dict[str, dict[str, ManualHandling]]  # referral_id -> {event_id: event}
    manual_messages: list[bytes]
    funnel: dict
    consent_event_ids: set[str]


@dataclass
class Expected:
    inbox: dict[str, str]  # referral_id -> centre slug
    manual: dict[str, str]  # referral_id -> reason
    declined: set[str]
    withdrawn: set[str]

    @classmethod
    def from_load(cls, load: LoadGenerator) -> Expected:
        def ids(kind: str) -> list[Submission]:
            return load.acknowledged(kind)

        return cls(
            inbox={str(s.referral_id): s.centre for s in ids(ACCEPTED)},
            manual={
                **{str(s.referral_id): ManualReason.OUTSIDE_DISTRICT.value for s in ids(OUTSIDE_DISTRICT)},
                **{str(s.referral_id): ManualReason.NO_MUNICIPALITY.value for s in ids(NO_MUNICIPALITY)},
            },
            declined={str(s.referral_id) for s in ids(DECLINED)},
            withdrawn={str(s.referral_id) for s in ids(WITHDRAWAL)},
        )

    @property
    def stats(self) -> dict[str, int]:
        return {
            "accepted": len(self.inbox) + len(self.manual),
            "declined": len(self.declined),
            "withdrawn": len(self.withdrawn),
        }


class Observer:
    """Reads the pipeline's state where users would see it: inbox, manual desk, stats, consent store."""

    def __init__(self, pipeline: FaultPipeline):
        self.pipeline = pipeline
        self.centre = make_engine(pipeline.centre_database_url)
        self.consent = make_engine(pipeline.consent_database_url)
        self.manual_reader: TopicReader | None = None

    def inbox_count(self) -> int:
        with self.centre.connect() as conn:
            return conn.execute(sa.text("SELECT count(*) FROM referrals")).scalar_one()

    def snapshot(self) -> Snapshot:
        with self.centre.connect() as conn:
            rows = conn.execute(sa.text("SELECT * FROM referrals")).mappings().all()
        inbox = {row["referral_id"]: dict(row) for row in rows}
        if self.manual_reader is None:
            self.manual_reader = TopicReader(self.pipeline.bootstrap, MANUAL_HANDLING.name)
        messages = self.manual_reader.read_to_end()
        manual: dict[str, dict[str, ManualHandling]] = defaultdict(dict)
        for raw in messages:
            event = parse_event(raw)
            manual[str(event.referral_id)][str(event.event_id)] = event
        funnel = httpx.get(
            f"{self.pipeline.url('stats')}/v1/funnel",
            headers={"Authorization": f"Bearer {self.pipeline.token('researcher')}"},
            timeout=10,
        ).json()
        with self.consent.connect() as conn:
            consent_ids = set(conn.execute(sa.text("SELECT event_id FROM consent_events")).scalars())
        return Snapshot(inbox, dict(manual), list(messages), funnel, consent_ids)

    def close(self) -> None:
        if self.manual_reader is not None:
            self.manual_reader.close()
        self.centre.dispose()
        self.consent.dispose()


def drained(snapshot: Snapshot, expected: Expected) -> bool:
    erased = all(
        snapshot.inbox.get(referral_id, {}).get("contact_erased_at") is not None for referral_id in expected.withdrawn
    )
    return (
        set(expected.inbox) <= set(snapshot.inbox)
        and erased
        and set(expected.manual) <= set(snapshot.manual)
        and all(snapshot.funnel.get(key) == value for key, value in expected.stats.items())
    )


# ---------------------------------------------------------------------- the run


@dataclass
class FaultRecord:
    kills: Counter = field(default_factory=Counter)
    restarts: Counter = field(default_factory=Counter)
    broker_restarts: int = 0
    postgres_restarts: int = 0
    #: what happened, in order, with the seconds until the pipeline delivered again
    events: list[dict] = field(default_factory=list)
    accepted_while_broker_down: int = 0
    outage_window: tuple[float, float] = (0.0, 0.0)  # PostgreSQL stopped .. start requested
    answers_503_while_postgres_down: int = 0
    consent_recovery_seconds: float = 0.0


@dataclass
class FaultRun:
    pipeline: FaultPipeline
    load: LoadGenerator
    record: FaultRecord
    expected: Expected
    snapshot: Snapshot
    drain_seconds: float
    summary: dict


def _run_schedule(
    pipeline: FaultPipeline, load: LoadGenerator, observer: Observer, rng: random.Random, record: FaultRecord
) -> None:
    supervisor = pipeline.supervisor

    killed: set[str] = set()  # down on purpose until restarted

    def alive_and(condition):
        """A condition that fails at once, with the dead part's last log lines, if a part died by itself."""

        def check():
            for name, child in supervisor.children.items():
                if name not in killed and not child.alive:
                    supervisor.check_alive()  # raises, with the part's last log lines
            return condition()

        return check

    def after_load(decisions: int) -> None:
        """A random moment: after this many more answers from the consent API."""
        target = load.answered + decisions
        wait_until(
            alive_and(lambda: load.answered >= target),
            timeout=120,
            interval=0.05,
            message=f"the load stalled below {target} answers",
        )

    def delivering_again(what: str, started: float) -> None:
        before = observer.inbox_count()
        wait_until(
            alive_and(lambda: observer.inbox_count() > before),
            timeout=READY_TIMEOUT,
            interval=0.2,
            message=f"no referral reached an inbox after {what}",
        )
        record.events.append({"fault": what, "seconds_until_delivering_again": round(time.monotonic() - started, 1)})

    wait_until(
        lambda: observer.inbox_count() > 0,
        timeout=READY_TIMEOUT,
        interval=0.2,
        message="no referral was ever delivered",
    )

    for name in rng.sample(WORKERS, len(WORKERS)):
        after_load(rng.randint(20, 120))
        supervisor.kill(name)
        killed.add(name)
        record.kills[name] += 1
        started = time.monotonic()
        after_load(rng.randint(0, 60))  # down for a while: a backlog builds up
        supervisor.restart(name, timeout=READY_TIMEOUT)
        killed.discard(name)
        record.restarts[name] += 1
        delivering_again(f"SIGKILL {name}", started)

    after_load(rng.randint(20, 120))
    for name in WORKERS:
        supervisor.kill(name)
        killed.add(name)
        record.kills[name] += 1
    started = time.monotonic()
    after_load(rng.randint(0, 60))
    children = [supervisor.spawn(supervisor.children[name].part) for name in WORKERS]
    killed.clear()
    for child in children:
        supervisor.wait_ready(child, timeout=READY_TIMEOUT)
        record.restarts[child.part.name] += 1
    delivering_again("SIGKILL all four workers", started)

    infrastructure = ["broker", "postgres"]
    rng.shuffle(infrastructure)
    for fault in infrastructure:
        after_load(rng.randint(20, 120))
        if fault == "broker":
            started = time.monotonic()
            pipeline.stop_broker()
            down = time.monotonic()
            after_load(rng.randint(60, 150))
            record.accepted_while_broker_down = load.answered_since(down, is_2xx)
            pipeline.start_broker()
            record.broker_restarts += 1
            delivering_again("Kafka broker stop/start", started)
        else:
            started = time.monotonic()
            pipeline.postgres.stop()
            stopped = time.monotonic()
            wait_until(
                alive_and(lambda stopped=stopped: load.answered_since(stopped, lambda answer: answer == 503) >= 20),
                timeout=120,
                message="the consent API did not answer 503 while its database was down",
            )
            start_requested = time.monotonic()
            record.outage_window = (stopped, start_requested)
            record.answers_503_while_postgres_down = load.answered_since(stopped, lambda answer: answer == 503)
            pipeline.postgres.start()
            restarted = time.monotonic()
            record.postgres_restarts += 1
            wait_until(
                alive_and(lambda restarted=restarted: load.answered_since(restarted, is_2xx) > 0),
                timeout=READY_TIMEOUT,
                interval=0.1,
                message="the consent API did not accept decisions again after PostgreSQL came back",
            )
            record.consent_recovery_seconds = round(time.monotonic() - restarted, 1)
            delivering_again("PostgreSQL stop/start under the consent API", started)


@pytest.fixture(scope="module")
def fault_run(fault_pipeline: FaultPipeline) -> FaultRun:
    pipeline = fault_pipeline
    rng = random.Random(SEED)
    load = LoadGenerator(pipeline.url("consent"), pipeline.token("police"), SEED, RATE, pipeline.remember_personal_data)
    observer = Observer(pipeline)
    record = FaultRecord()
    consent_api_pid = pipeline.supervisor.children["consent-api"].process.pid
    load.start()
    try:
        _run_schedule(pipeline, load, observer, rng, record)
    finally:
        load.stop()
    load.settle()
    expected = Expected.from_load(load)
    drain_started = time.monotonic()
    snapshot_holder: list[Snapshot] = []

    def is_drained() -> bool:
        # A worker that found its consumer stuck exits asking for a restart (EXIT_RESTART), as
        # Kubernetes would restart it; any other death fails here.  Counted in the summary.
        pipeline.supervisor.check_alive()
        snapshot_holder[:] = [observer.snapshot()]
        return drained(snapshot_holder[0], expected)

    try:
        wait_until(is_drained, timeout=DRAIN_TIMEOUT, interval=1.0, message="the pipeline did not drain")
    except AssertionError as exc:
        last = snapshot_holder[0] if snapshot_holder else None
        detail = (
            f"; inbox missing {len(set(expected.inbox) - set(last.inbox))}, manual missing "
            f"{len(set(expected.manual) - set(last.manual))}, stats "
            f"{ {key: last.funnel.get(key) for key in expected.stats} } vs {expected.stats}"
            if last
            else ""
        )
        raise AssertionError(f"{exc}{detail}") from None
    drain_seconds = time.monotonic() - drain_started
    snapshot = snapshot_holder[0]
    observer.close()
    pipeline.supervisor.check_alive()

    submissions = load.submissions
    summary = {
        "seed": SEED,
        "rate_per_second_asked": RATE,
        "load_seconds": round(load.stopped_at - load.started_at, 1),
        "events_submitted": len(submissions),
        "http_attempts": sum(len(s.attempts) for s in submissions),
        "answers": {str(key): value for key, value in sorted(load.answers.items(), key=str)},
        "acknowledged_by_kind": {
            kind: len(load.acknowledged(kind))
            for kind in (ACCEPTED, DECLINED, OUTSIDE_DISTRICT, NO_MUNICIPALITY, WITHDRAWAL)
        },
        "kills": dict(record.kills),
        "kills_total": sum(record.kills.values()),
        "restarts_total": sum(record.restarts.values()),
        "self_restarts": dict(pipeline.supervisor.self_restarts),
        "broker_restarts": record.broker_restarts,
        "postgres_restarts": record.postgres_restarts,
        "accepted_while_broker_down": record.accepted_while_broker_down,
        "answers_503_while_postgres_down": record.answers_503_while_postgres_down,
        "consent_api_recovery_seconds": record.consent_recovery_seconds,
        "consent_api_same_process": pipeline.supervisor.children["consent-api"].process.pid == consent_api_pid,
        "faults": record.events,
        "drain_seconds": round(drain_seconds, 1),
        "inbox_referrals": len(snapshot.inbox),
        "manual_handling_referrals": len(snapshot.manual),
        "manual_messages_read": len(snapshot.manual_messages),
        "stats_funnel": {key: snapshot.funnel.get(key) for key in ("offered", "accepted", "declined", "withdrawn")},
    }
    (pipeline.run_dir / "fault-summary.json").write_text(json.dumps(summary, indent=2))
    return FaultRun(pipeline, load, record, expected, snapshot, drain_seconds, summary)


# ---------------------------------------------------------------------- the invariant


def test_every_part_survived_every_fault_and_the_run_is_reported(fault_run: FaultRun):
    print("\nFault suite summary:\n" + json.dumps(fault_run.summary, indent=2))
    record = fault_run.record
    assert all(record.kills[name] == 2 for name in WORKERS), record.kills  # alone once, together once
    assert sum(record.restarts.values()) == 2 * len(WORKERS)
    assert (record.broker_restarts, record.postgres_restarts) == (1, 1)
    assert len(record.events) == 7  # four kills alone, all four together, broker, PostgreSQL: each recovered
    assert fault_run.summary["consent_api_same_process"], "the consent API had to be restarted to recover"
    assert len(fault_run.expected.inbox) > 100 and fault_run.expected.withdrawn and fault_run.expected.declined


def test_every_acknowledged_consent_is_in_its_centres_inbox_exactly_once(fault_run: FaultRun):
    inbox, expected = fault_run.snapshot.inbox, fault_run.expected
    missing = set(expected.inbox) - set(inbox)
    unexpected = set(inbox) - set(expected.inbox)  # a declined, manual or never-acknowledged one
    wrong_centre = {
        rid: (row["centre"], expected.inbox[rid])
        for rid, row in inbox.items()
        if rid in expected.inbox and row["centre"] != expected.inbox[rid]
    }
    assert (len(missing), len(unexpected), wrong_centre) == (0, 0, {})
    # one row per referral id is the table's key; the consent it came from must be the one we sent
    accepted = {str(s.referral_id): s for s in fault_run.load.acknowledged(ACCEPTED)}
    for referral_id, row in inbox.items():
        assert row["case_ref"] is None or row["case_ref"] == accepted[referral_id].event.case_ref


def test_outside_district_and_no_address_consents_reach_manual_handling_once(fault_run: FaultRun):
    manual, expected = fault_run.snapshot.manual, fault_run.expected
    assert set(manual) == set(expected.manual), "manual handling holds other referrals than the outside/no-address ones"
    for referral_id, events in manual.items():
        assert len(events) == 1, f"referral {referral_id} reached manual handling {len(events)} times"
        (event,) = events.values()
        assert event.reason.value == expected.manual[referral_id]


def test_manual_handling_topic_holds_no_personal_data_in_plain_text(fault_run: FaultRun):
    text = b"\n".join(fault_run.snapshot.manual_messages).decode("utf-8", errors="replace")
    leaked = sorted(value for value in fault_run.pipeline.submitted_personal_data if value in text)
    assert leaked == []


def test_declined_decisions_reach_no_centre_and_no_manual_desk(fault_run: FaultRun):
    declined = fault_run.expected.declined
    assert declined
    assert declined.isdisjoint(fault_run.snapshot.inbox)
    assert declined.isdisjoint(fault_run.snapshot.manual)


def test_every_acknowledged_withdrawal_erased_the_contact_details(fault_run: FaultRun):
    inbox, withdrawn = fault_run.snapshot.inbox, fault_run.expected.withdrawn
    assert withdrawn
    not_erased = [rid for rid in withdrawn if any(inbox[rid][column] is not None for column in PERSONAL_COLUMNS)]
    assert not_erased == []
    assert all(inbox[rid]["contact_erased_at"] is not None for rid in withdrawn)
    # and only those: every other referral still has the person to call (sealed, as it came)
    kept = [row for rid, row in inbox.items() if rid not in withdrawn]
    assert kept and all(row["personal_sealed"] for row in kept)


def test_the_stats_count_each_decision_once(fault_run: FaultRun):
    funnel = fault_run.snapshot.funnel
    assert {key: funnel.get(key) for key in fault_run.expected.stats} == fault_run.expected.stats
    assert funnel.get("offered") == fault_run.expected.stats["accepted"] + fault_run.expected.stats["declined"]


def test_the_consent_api_never_acknowledged_a_decision_it_did_not_store(fault_run: FaultRun):
    stored = fault_run.snapshot.consent_event_ids
    acknowledged = [s for s in fault_run.load.submissions if s.acknowledged]
    assert len(acknowledged) == len(fault_run.load.submissions)  # every event was settled by retries
    assert [str(s.event.event_id) for s in acknowledged if str(s.event.event_id) not in stored] == []
    # nothing but accepted (2xx), unavailable (503) or no answer at all: no 4xx/500 for valid events
    odd = {
        answer: count
        for answer, count in fault_run.load.answers.items()
        if isinstance(answer, int) and not (is_2xx(answer) or answer == 503)
    }
    assert odd == {}


def test_the_consent_api_answered_503_while_postgresql_was_down_and_recovered_by_itself(fault_run: FaultRun):
    record, load = fault_run.record, fault_run.load
    assert record.answers_503_while_postgres_down >= 20
    stopped, start_requested = record.outage_window
    # one second of grace for a commit PostgreSQL finished just before it shut down
    acknowledged_while_down = [
        attempt
        for s in load.submissions
        for attempt in s.attempts
        if stopped + 1.0 <= attempt.at <= start_requested and is_2xx(attempt.answer)
    ]
    assert acknowledged_while_down == []
    assert fault_run.summary["consent_api_same_process"]
    # a 503 stored nothing: its retry was new (202), not a replay of something kept (200)
    stored_after_503 = [
        s
        for s in load.submissions
        if any(a.answer == 503 for a in s.attempts)
        and s.first_2xx == 200
        and not any(isinstance(a.answer, str) for a in s.attempts)
    ]
    assert stored_after_503 == []
