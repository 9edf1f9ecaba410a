"""The relay against a real broker: outages, SIGKILL and two replicas, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import signal
from collections import defaultdict
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from henvis.kafka import topic_name
from henvis.schemas.events import parse_decision
from henvis.services.consent import domain, store
from henvis.services.consent.models import consent_outbox
from henvis.settings import KafkaSettings
from henvis_dev import broker
from tests import examples
from tests.consent_support import (
    POLICE,
    consent_app,
    log_lines,
    logged,
    migrated_engine,
    protection,
    read_topic,
    secrets,
    start_relay,
    stop,
)
from tests.helpers import free_port, wait_until

pytestmark = pytest.mark.slow
TOPIC_BASE = "consent.decisions.v2"


@pytest.fixture(scope="module")
def private_broker(tmp_path_factory):
    """A broker of this module's own, so stopping it never disturbs other tests."""
    run_dir = tmp_path_factory.mktemp("consent-broker")
    ports = {"port": free_port(), "controller_port": free_port()}
    handle = broker.start(run_dir, **ports, progress=lambda *_: None)
    try:
        yield run_dir, ports, handle.bootstrap
    finally:
        broker.stop(run_dir)


def _events_for_cases(cases: int, per_case: int) -> list[dict]:
    """Interleaved events of many cases: given, declined and withdrawn mixed within a case."""
    events = []
    for round_number in range(per_case):
        for case in range(cases):
            case_ref = f"4100-{case:05d}-00001-26"
            kind = round_number % 3
            if kind == 0:
                events.append(examples.consent_given(case_ref=case_ref))
            elif kind == 1:
                events.append(examples.consent_declined(case_ref=case_ref))
            else:
                events.append(examples.consent_withdrawn(case_ref=case_ref))
    return events


def _post_all(client: TestClient, events: list[dict]) -> None:
    for event in events:
        path = "/v1/withdrawals" if event["event_type"] == "consent.withdrawn" else "/v1/decisions"
        response = client.post(path, json=event, headers=POLICE)
        assert response.status_code == 202, response.text


def _assert_exactly_in_order(messages: list[tuple[str, dict]], events: list[dict]) -> None:
    published_ids = [value["event_id"] for _, value in messages]
    assert len(published_ids) == len(set(published_ids)), "an event was published twice"
    assert set(published_ids) == {event["event_id"] for event in events}
    expected_by_case: dict[str, list[str]] = defaultdict(list)
    pseudonyms = protection().pseudonyms
    for event in events:
        expected_by_case[pseudonyms(event["case_ref"])].append(event["event_id"])
    seen_by_case: dict[str, list[str]] = defaultdict(list)
    for key, value in messages:
        assert key == value["case_pseudonym"]
        seen_by_case[key].append(value["event_id"])
    assert seen_by_case == expected_by_case


def _assert_no_personal_data(log_path: Path) -> None:
    text = log_path.read_text(encoding="utf-8", errors="replace")
    for secret in [*secrets(), "4100-0000"]:
        assert secret not in text


def _unsent(engine) -> int:
    return store.backlog(engine).unsent


def test_decisions_posted_while_kafka_is_down_all_arrive_once_and_in_order_per_case(
    database_url: str, private_broker, topic_prefix: str, tmp_path: Path
) -> None:
    run_dir, ports, bootstrap = private_broker
    kafka = KafkaSettings(bootstrap_servers=bootstrap, topic_prefix=topic_prefix, partitions=3)
    engine = migrated_engine(database_url)
    relay_log = tmp_path / "relay.log"
    relay = start_relay(tmp_path, database_url, kafka, relay_log)
    try:
        wait_until(lambda: logged(relay_log, "worker_ready"), timeout=60, message="relay ready")
        broker.stop(run_dir)

        events = _events_for_cases(cases=50, per_case=10)
        with TestClient(consent_app(database_url)) as client:
            _post_all(client, events)  # every one answered 202 while the broker is down
        assert _unsent(engine) == 500

        broker.start(run_dir, **ports, progress=lambda *_: None)
        wait_until(lambda: _unsent(engine) == 0, timeout=180, interval=0.5, message="outbox drained")
        messages = read_topic(kafka, topic_name(TOPIC_BASE, kafka), expected=500)
        _assert_exactly_in_order(messages, events)
        assert relay.poll() is None, "the relay must outlive the outage"
    finally:
        broker.start(run_dir, **ports, progress=lambda *_: None)  # leave it up for the next test
        stop(relay)
        engine.dispose()
    assert relay.returncode == 0, "relay did not stop cleanly on SIGTERM"
    _assert_no_personal_data(relay_log)


def test_relay_started_while_kafka_is_down_publishes_once_it_is_back(
    database_url: str, private_broker, topic_prefix: str, tmp_path: Path
) -> None:
    run_dir, ports, bootstrap = private_broker
    kafka = KafkaSettings(bootstrap_servers=bootstrap, topic_prefix=topic_prefix, partitions=3)
    engine = migrated_engine(database_url)
    events = _events_for_cases(cases=3, per_case=3)
    with TestClient(consent_app(database_url)) as client:
        _post_all(client, events)
    broker.stop(run_dir)
    relay_log = tmp_path / "relay.log"
    relay = start_relay(tmp_path, database_url, kafka, relay_log)
    try:
        wait_until(lambda: logged(relay_log, "relay_retrying"), timeout=60, message="relay retries")
        assert relay.poll() is None and not logged(relay_log, "worker_ready")
        broker.start(run_dir, **ports, progress=lambda *_: None)
        wait_until(lambda: _unsent(engine) == 0, timeout=120, interval=0.5, message="outbox drained")
        assert logged(relay_log, "worker_ready")
        _assert_exactly_in_order(read_topic(kafka, topic_name(TOPIC_BASE, kafka), expected=9), events)
    finally:
        broker.start(run_dir, **ports, progress=lambda *_: None)
        stop(relay)
        engine.dispose()


def _backlog(engine, count: int, cases: int) -> list[dict]:
    events = _events_for_cases(cases=cases, per_case=count // cases)
    for event in events:
        if event["event_type"] != "consent.withdrawn":
            store.accept(engine, parse_decision(event), "politi-test", protection())
            continue
        from henvis.schemas.events import ConsentWithdrawn

        withdrawal = ConsentWithdrawn.model_validate(event)
        withdrawn, _ = domain.resolve_withdrawal(withdrawal, None, protection().pseudonyms)
        store.accept(engine, withdrawal, "politi-test", protection(), withdrawn)
    return events


def _sent(engine) -> int:
    with engine.connect() as conn:
        return conn.execute(select(func.count()).where(consent_outbox.c.sent_at.is_not(None))).scalar_one()


def test_relay_killed_while_publishing_loses_nothing(
    database_url: str, kafka_settings: KafkaSettings, tmp_path: Path
) -> None:
    engine = migrated_engine(database_url)
    events = _backlog(engine, count=2000, cases=100)
    relay_log = tmp_path / "relay.log"
    relay = start_relay(tmp_path, database_url, kafka_settings, relay_log, HENVIS_CONSENT_RELAY_BATCH_SIZE="20")
    try:
        wait_until(lambda: _sent(engine) >= 100, timeout=90, interval=0.02, message="relay publishing")
        relay.send_signal(signal.SIGKILL)
        relay.wait()
        sent_before_restart = _sent(engine)
        assert sent_before_restart < 2000, "the relay finished before it could be killed"

        relay = start_relay(tmp_path, database_url, kafka_settings, relay_log, HENVIS_CONSENT_RELAY_BATCH_SIZE="20")
        wait_until(lambda: _unsent(engine) == 0, timeout=180, interval=0.5, message="outbox drained after restart")
        messages = read_topic(kafka_settings, topic_name(TOPIC_BASE, kafka_settings), expected=2000)
    finally:
        stop(relay)
        engine.dispose()
    published_ids = {value["event_id"] for _, value in messages}
    assert published_ids == {event["event_id"] for event in events}, "a decision is missing after the crash"
    _assert_no_personal_data(relay_log)


def test_two_relays_publish_every_row_once_and_keep_each_case_in_order(
    database_url: str, kafka_settings: KafkaSettings, tmp_path: Path
) -> None:
    engine = migrated_engine(database_url)
    events = _backlog(engine, count=1000, cases=40)
    logs = [tmp_path / "relay-a.log", tmp_path / "relay-b.log"]
    relays = [
        start_relay(tmp_path, database_url, kafka_settings, log, HENVIS_CONSENT_RELAY_BATCH_SIZE="25") for log in logs
    ]
    try:
        wait_until(lambda: _unsent(engine) == 0, timeout=180, interval=0.5, message="outbox drained")
        messages = read_topic(kafka_settings, topic_name(TOPIC_BASE, kafka_settings), expected=1000)
    finally:
        for relay in relays:
            stop(relay)
        engine.dispose()
    _assert_exactly_in_order(messages, events)
    assert all(logged(log, "worker_ready") for log in logs)
    for log in logs:
        assert all(json.loads(line) for line in log_lines(log) if line.startswith("{"))


def test_an_idle_relay_is_woken_by_each_commit_not_by_its_poll(
    database_url: str, kafka_settings: KafkaSettings, tmp_path: Path
) -> None:
    """With a poll of a minute, each decision is published while the next one waits for it."""
    engine = migrated_engine(database_url)
    relay_log = tmp_path / "relay.log"
    relay = start_relay(
        tmp_path, database_url, kafka_settings, relay_log, HENVIS_CONSENT_RELAY_POLL_INTERVAL_SECONDS="60"
    )
    events = _events_for_cases(cases=4, per_case=1)
    try:
        wait_until(lambda: logged(relay_log, "worker_ready"), timeout=60, message="relay ready")
        with TestClient(consent_app(database_url)) as client:
            for number, event in enumerate(events, start=1):
                _post_all(client, [event])
                # Half the poll interval: only a wake-up on commit publishes it in time.
                wait_until(lambda n=number: _sent(engine) == n, timeout=30, interval=0.05, message="woken relay")
        messages = read_topic(kafka_settings, topic_name(TOPIC_BASE, kafka_settings), expected=len(events))
    finally:
        stop(relay)
        engine.dispose()
    assert relay.returncode == 0, "relay did not stop cleanly on SIGTERM"
    _assert_exactly_in_order(messages, events)
