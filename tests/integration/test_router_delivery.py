"""The router on the real broker: every accepted consent reaches its own centre's topic,
through kills, a second worker and a replay (issue 4).

Each test feeds ``consent.decisions.v2`` directly (as the consent relay would) and runs
``henvis router worker`` as a child process.  Duplicate messages on the centre topics are
allowed by design (the centre inbox dedupes by referral_id) but counted and printed.
"""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime

import httpx
import pytest
from kafka import KafkaAdminClient
from kafka.admin import TransactionState

from henvis.kafka import centre_topic_name, henvis_topics, topic_name
from henvis.registry import load_registry
from henvis.schemas.events import ConsentGiven, ConsentWithdrawn, parse_event
from henvis.schemas.topics import CONSENT_DECISIONS, MANUAL_HANDLING
from henvis_dev import loadgen
from tests.helpers import free_port, wait_until

REGISTRY = load_registry()
PROCESSING_TIMEOUT = 600  # generous: a shared 2-core machine; tests wait on real conditions


def group_id(kafka_settings) -> str:
    return f"{kafka_settings.topic_prefix}henvis-router"


def wait_until_processed(kafka_settings, timeout: float = PROCESSING_TIMEOUT) -> None:
    """The whole input committed and every output visible (the group's offset is a copy made
    after the transactions, so it can run ahead of their commit markers by a moment)."""
    wait_until(
        lambda: loadgen.committed_lag(kafka_settings, group_id(kafka_settings)) == 0,
        timeout=timeout,
        interval=0.5,
        message="router did not commit the whole input",
    )
    wait_until_outputs_visible(kafka_settings, timeout)


def wait_until_outputs_visible(kafka_settings, timeout: float = PROCESSING_TIMEOUT) -> None:
    """Every transaction on henvis's topics complete: what the router committed is readable."""
    outputs = list(henvis_topics(kafka_settings, REGISTRY))
    wait_until(
        lambda: loadgen.unsettled_records(kafka_settings, outputs) == 0,
        timeout=timeout,
        interval=0.2,
        message="the router's last transactions never became visible",
    )


def assert_every_referral_on_its_own_centre_topic(observed: loadgen.Observed, expected: loadgen.Expected) -> None:
    delivered = observed.distinct_referrals()
    missing = set(expected.referrals) - set(delivered)
    assert not missing, f"{len(missing)} accepted consents never reached a centre"
    assert observed.misplaced(expected.referrals) == [], "a referral is on another centre's topic"
    assert observed.centre_field_mismatch == 0
    per_centre = {slug: len(set(ids)) for slug, ids in observed.issued.items()}
    expected_per_centre = {slug: list(expected.referrals.values()).count(slug) for slug in REGISTRY.slugs}
    assert per_centre == expected_per_centre
    assert {rid: slug for slug, ids in observed.withdrawn.items() for rid in ids} == expected.withdrawals
    assert observed.withdrawn_before_issued == [], "a withdrawal reached a centre before its referral"
    assert observed.manual == expected.manual
    assert observed.facts == expected.facts


def report(label: str, observed: loadgen.Observed, record_property) -> None:
    duplicates = observed.duplicate_messages()
    record_property(f"{label}_duplicate_messages", duplicates)
    print(
        f"\n[{label}] referrals={len(observed.distinct_referrals())} "
        f"messages={sum(len(ids) for ids in observed.issued.values())} duplicate_messages={duplicates}"
    )


@pytest.mark.slow
def test_ten_thousand_mixed_decisions_reach_exactly_their_centres(kafka_settings, workers, record_property):
    expected = loadgen.mixed_decisions(10_000, REGISTRY, seed=10)
    assert set(expected.referrals.values()) == set(REGISTRY.slugs)  # all eleven in play
    loadgen.produce(kafka_settings, expected.messages)

    worker = workers()
    wait_until_processed(kafka_settings)

    observed = loadgen.observe(kafka_settings, REGISTRY)
    assert_every_referral_on_its_own_centre_topic(observed, expected)
    report("10k", observed, record_property)
    assert worker.stop() == 0  # SIGTERM: a clean stop


@pytest.mark.slow
@pytest.mark.parametrize("membership", ["static", "dynamic"])
def test_sigkill_mid_stream_delivers_every_referral_exactly_once(kafka_settings, workers, record_property, membership):
    expected = loadgen.mixed_decisions(10_000, REGISTRY, seed=11)
    group = group_id(kafka_settings)
    # Static, the default (the host name, in Kubernetes the pod name): a restart takes the
    # partitions back at once.  Dynamic: the restart waits for the dead member's session.
    worker = workers(**({} if membership == "static" else {"HENVIS_ROUTER_INSTANCE_ID": ""}))
    wait_until(worker.is_ready, timeout=120, message="router not ready")
    feeder = loadgen.Feeder(kafka_settings, expected.messages, per_second=800)
    feeder.start()
    for kill in range(3):
        # Kill it without warning once it has committed fresh work since its (re)start, while
        # decisions keep arriving, then start it again.
        committed_at_start = loadgen.committed_total(kafka_settings, group)
        wait_until(
            lambda start=committed_at_start: loadgen.committed_total(kafka_settings, group) >= start + 300,
            timeout=PROCESSING_TIMEOUT,
            interval=0.1,
            message=f"router made no progress before kill {kill + 1}",
        )
        worker.kill()
        print(f"\nkill {kill + 1}: {feeder.sent} fed, feeding {'on' if feeder.running() else 'done'}")
        worker.start()
    feeder.finish()
    wait_until_processed(kafka_settings)

    observed = loadgen.observe(kafka_settings, REGISTRY)
    assert_every_referral_on_its_own_centre_topic(observed, expected)
    report(f"sigkill-{membership}", observed, record_property)
    # Exactly once on the topics themselves, not only in the inbox: an aborted transaction's
    # messages are invisible to read_committed readers.
    assert observed.duplicate_messages() == 0


@pytest.mark.slow
def test_two_workers_in_one_group_share_the_work_and_give_the_same_result(kafka_settings, workers, record_property):
    expected = loadgen.mixed_decisions(6_000, REGISTRY, seed=12)
    first, second = workers("router-a"), workers("router-b")
    wait_until(lambda: first.is_ready() and second.is_ready(), timeout=120, message="workers not ready")
    loadgen.produce(kafka_settings, expected.messages)

    wait_until_processed(kafka_settings)
    wait_until(
        lambda: first.last_assignment() and second.last_assignment(),
        timeout=60,
        message="both workers should hold partitions",
    )

    assert set(first.last_assignment()).isdisjoint(second.last_assignment())
    observed = loadgen.observe(kafka_settings, REGISTRY)
    assert_every_referral_on_its_own_centre_topic(observed, expected)
    report("two-workers", observed, record_property)


@pytest.mark.slow
def test_a_worker_joining_and_another_leaving_mid_stream_loses_nothing(kafka_settings, workers, record_property):
    expected = loadgen.mixed_decisions(10_000, REGISTRY, seed=14)
    group = group_id(kafka_settings)
    first = workers("router-a")
    wait_until(first.is_ready, timeout=120, message="first router not ready")
    # Half is held back until the second worker has its partitions: both rebalances fall
    # mid-stream however long that worker takes to start on a busy machine.
    feeder = loadgen.Feeder(kafka_settings, expected.messages, per_second=800, hold_after=5_000)
    feeder.start()
    wait_until(
        lambda: loadgen.committed_total(kafka_settings, group) >= 1_500,
        timeout=PROCESSING_TIMEOUT,
        interval=0.2,
        message="no progress",
    )
    second = workers("router-b")  # scale out mid-stream: a rebalance while the first is busy
    wait_until(lambda: second.is_ready() and second.last_assignment(), timeout=120, message="second never got work")
    assert feeder.running(), "the rebalance should fall mid-stream"
    feeder.release()
    wait_until(lambda: feeder.sent > 5_500, timeout=120, message="the rest is not being fed")
    assert first.stop() == 0  # scale in mid-stream: SIGTERM, its partitions move to the second
    feeder.finish()
    wait_until_processed(kafka_settings)

    observed = loadgen.observe(kafka_settings, REGISTRY)
    assert_every_referral_on_its_own_centre_topic(observed, expected)
    report("rebalance", observed, record_property)
    assert observed.duplicate_messages() == 0


@pytest.mark.slow
def test_a_paused_worker_that_lost_its_partitions_cannot_commit_when_it_wakes(kafka_settings, workers, record_property):
    expected = loadgen.mixed_decisions(6_000, REGISTRY, seed=15)
    group = group_id(kafka_settings)
    zombie, survivor = workers("router-a"), workers("router-b")
    wait_until(
        lambda: zombie.last_assignment() and survivor.last_assignment(), timeout=120, message="both must hold work"
    )
    feeder = loadgen.Feeder(kafka_settings, expected.messages, per_second=500)
    feeder.start()
    wait_until(lambda: loadgen.committed_total(kafka_settings, group) >= 500, timeout=120, message="no progress")

    # Freeze the zombie while one of its transactions is open (written to, not committed).
    topic = topic_name(CONSENT_DECISIONS.name, kafka_settings)
    transactional_ids = [f"{group}-{topic}-{partition}" for partition in zombie.last_assignment()]
    admin = KafkaAdminClient(bootstrap_servers=kafka_settings.bootstrap_servers)
    try:
        for _attempt in range(200):
            zombie.pause()
            states = admin.describe_transactions(transactional_ids)
            open_ids = [
                tid for tid, txn in states.items() if txn.state is TransactionState.ONGOING and txn.topic_partitions
            ]
            if open_ids:
                break
            zombie.resume()
            time.sleep(0.02)
        else:
            pytest.fail("never caught the worker inside a transaction")
    finally:
        admin.close()
    print(f"\nfrozen with open transactions {open_ids}")

    # Past its session timeout the group gives its partitions to the survivor, whose producers
    # fence the zombie's and abort its open transactions.
    all_partitions = list(range(kafka_settings.partitions))
    wait_until(lambda: survivor.last_assignment() == all_partitions, timeout=120, message="survivor never took over")
    progress = loadgen.committed_total(kafka_settings, group)
    wait_until(
        lambda: loadgen.committed_total(kafka_settings, group) > progress + 200,
        timeout=120,
        message="survivor made no progress",
    )

    zombie.resume()
    # Its late commit is refused: the broker fenced it.
    wait_until(
        lambda: any(line.get("event") == "transaction_abandoned" and line.get("fenced") for line in zombie.log_lines()),
        timeout=120,
        message="the zombie's late transaction was not refused as fenced",
    )
    feeder.finish()
    wait_until_processed(kafka_settings)

    observed = loadgen.observe(kafka_settings, REGISTRY)
    assert_every_referral_on_its_own_centre_topic(observed, expected)  # includes: no withdrawal before its referral
    report("zombie", observed, record_property)
    assert observed.duplicate_messages() == 0


@pytest.mark.slow
def test_replaying_the_same_input_after_a_restart_issues_no_new_referrals(kafka_settings, workers, record_property):
    expected = loadgen.mixed_decisions(2_000, REGISTRY, seed=13)
    loadgen.produce(kafka_settings, expected.messages)
    worker = workers()
    wait_until_processed(kafka_settings)
    before = loadgen.observe(kafka_settings, REGISTRY)
    assert worker.stop() == 0

    # A relay that re-publishes its whole outbox, seen by a freshly started router.
    loadgen.produce(kafka_settings, expected.messages)
    workers()
    wait_until_processed(kafka_settings)

    after = loadgen.observe(kafka_settings, REGISTRY)
    assert after.distinct_referrals() == before.distinct_referrals()
    assert_every_referral_on_its_own_centre_topic(after, expected)
    new_messages = sum(len(ids) for ids in after.issued.values()) - sum(len(ids) for ids in before.issued.values())
    record_property("replay_new_referral_messages", new_messages)
    print(f"\n[replay] new referral messages on centre topics after replaying 2,000 decisions: {new_messages}")
    assert new_messages == 0  # the recovered dedupe table drops every replayed event


def test_a_withdrawal_whose_consent_never_comes_reaches_manual_handling(kafka_settings, workers):
    occurred_at = datetime.now(UTC)
    orphan = ConsentWithdrawn(event_id=uuid.uuid4(), occurred_at=occurred_at, case_ref="4100-00000-00001-24")
    consent = ConsentGiven(
        event_id=uuid.uuid4(),
        occurred_at=occurred_at,
        case_ref="4100-00000-00002-24",
        offence="drug_driving",
        charged_on=occurred_at.date(),
        municipality_code="787",
        person={"full_name": "Test Person", "phone": "+4530405060"},
        consent_text_version="v1",
        recorded_by="test",
    )
    withdrawal = ConsentWithdrawn(event_id=uuid.uuid4(), occurred_at=occurred_at, case_ref=consent.case_ref)
    metrics_port = free_port()
    worker = workers(
        HENVIS_ROUTER_WITHDRAWAL_WAIT_SECONDS="1",
        HENVIS_ROUTER_WITHDRAWAL_CHECK_SECONDS="0.5",
        HENVIS_ROUTER_METRICS_PORT=str(metrics_port),
    )
    published = [loadgen.sealed(m, {}) for m in (orphan, consent, withdrawal)]  # as the consent relay publishes
    loadgen.produce(kafka_settings, [(m.kafka_key(), m.to_bytes()) for m in published])

    def manual_reasons():
        messages = loadgen.read_all(kafka_settings, topic_name(MANUAL_HANDLING.name, kafka_settings))
        return [parse_event(value) for _, value in messages]

    [unmatched] = wait_until(manual_reasons, timeout=120, message="no manual-handling event for the orphan")
    assert unmatched.reason == "withdrawal_unmatched"
    assert unmatched.source_event_id == orphan.event_id

    thisted = [
        parse_event(value).event_type
        for _, value in loadgen.read_all(kafka_settings, centre_topic_name("thisted", kafka_settings, REGISTRY))
    ]
    assert thisted == ["referral.issued", "referral.withdrawn"]
    metrics = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics").text
    assert "henvis_worker_ready 1.0" in metrics
    assert 'henvis_router_referrals_total{centre="thisted"} 1.0' in metrics
    assert 'henvis_router_manual_total{reason="withdrawal_unmatched"} 1.0' in metrics
    assert "henvis_router_latency_seconds_count 1.0" in metrics
    assert worker.stop() == 0
    log_text = (worker.log_path).read_text()
    for personal in ("Test Person", "30405060", "4100-00000"):
        assert personal not in log_text
