"""The stats worker on the real broker: facts and outcomes on their topics -> `henvis stats
worker` (a real process) -> SQL -> `GET /v1/funnel`, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from henvis.auth import hash_token
from henvis.kafka import make_producer, topic_name
from henvis.schemas.events import ReferralFact, ReferralOutcome
from henvis.schemas.topics import REFERRAL_FACTS, REFERRAL_OUTCOMES
from henvis.services.stats.api import create_stats_app
from henvis.services.stats.settings import StatsSettings
from henvis_dev.pilot import generate_pilot
from tests.helpers import free_port, wait_until

TOKEN = "researcher-token-for-worker-tests"
CLIENTS = json.dumps([{"name": "researcher", "role": "researcher", "token_sha256": hash_token(TOKEN)}])
MONDAY = date(2021, 5, 3)


@contextmanager
def stats_worker_running(database_url: str, tmp_path: Path, **extra_env: str) -> Iterator[dict]:
    """`henvis stats worker` as its own process on ``database_url``, ready, until the block ends.

    Kafka comes from the environment (the ``kafka_settings`` fixture sets it) or ``extra_env``."""
    metrics_port = free_port()
    env = {
        **os.environ,
        "HENVIS_STATS_DATABASE_URL": database_url,
        "HENVIS_STATS_METRICS_PORT": str(metrics_port),
        "HENVIS_RUN_DIR": str(tmp_path),
        **extra_env,
    }
    log_path = tmp_path / "worker.log"
    with open(log_path, "wb") as log_file:
        process = subprocess.Popen(
            [sys.executable, "-m", "henvis.cli", "stats", "worker"], env=env, stdout=log_file, stderr=subprocess.STDOUT
        )
    try:
        wait_until(
            lambda: process.poll() is None and "worker_ready" in log_path.read_text(errors="replace"),
            timeout=120,
            interval=0.5,
            message=f"stats worker not ready; log:\n{_tail(log_path)}",
        )
        yield {"process": process, "log": log_path, "metrics_port": metrics_port}
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@pytest.fixture
def stats_worker(database_url, kafka_settings, tmp_path):
    """A running `henvis stats worker` for this test's topics and database."""
    with stats_worker_running(
        database_url,
        tmp_path,
        HENVIS_STATS_RATE_GAUGE_INTERVAL_SECONDS="1",
        HENVIS_KAFKA_BOOTSTRAP_SERVERS=kafka_settings.bootstrap_servers,
        HENVIS_KAFKA_TOPIC_PREFIX=kafka_settings.topic_prefix,
        HENVIS_KAFKA_PARTITIONS=str(kafka_settings.partitions),
    ) as worker:
        yield worker


def _tail(path: Path) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-30:]) if path.exists() else "(no log)"


@pytest.fixture
def api(database_url):
    app = create_stats_app(StatsSettings(database_url=database_url, api_clients=CLIENTS))
    with TestClient(app) as client:
        yield client


def produce(kafka_settings, events) -> None:
    producer = make_producer(kafka_settings, "stats-test")
    try:
        for event in events:
            base = REFERRAL_FACTS.name if isinstance(event, ReferralFact) else REFERRAL_OUTCOMES.name
            producer.send(topic_name(base, kafka_settings), key=event.kafka_key(), value=event.to_bytes())
        producer.flush()
    finally:
        producer.close()


def funnel(api, **params) -> dict:
    response = api.get("/v1/funnel", params=params, headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 200
    return response.json()


def at(day: date, hours: int) -> datetime:
    return datetime.combine(day, datetime.min.time(), UTC) + timedelta(hours=hours)


def hand_made_events() -> list:
    """12 yes (5 later withdrawn), 8 no; 7 first interviews, 5 follow-ups; outcomes of half the
    referrals sent before their facts, and every event sent twice."""
    events: list = []
    accepted = [uuid.uuid4() for _ in range(12)]
    for index, referral_id in enumerate(accepted):
        fact = ReferralFact(
            event_id=uuid.uuid4(),
            occurred_at=at(MONDAY, 8),
            referral_id=referral_id,
            decision="accepted",
            offence="drink_driving",
            municipality_code="657",
            centre="herning",
            decided_on=MONDAY,
            contact_due_by=MONDAY + timedelta(days=1),
        )
        outcomes = [
            ReferralOutcome(
                event_id=uuid.uuid4(),
                occurred_at=at(MONDAY, 24 + index),
                referral_id=referral_id,
                centre="herning",
                outcome="contacted",
            )
        ]
        if index < 7:
            outcomes.append(
                ReferralOutcome(
                    event_id=uuid.uuid4(),
                    occurred_at=at(MONDAY, 72),
                    referral_id=referral_id,
                    centre="herning",
                    outcome="first_interview_held",
                )
            )
        if index < 5:
            outcomes.append(
                ReferralOutcome(
                    event_id=uuid.uuid4(),
                    occurred_at=at(MONDAY, 96),
                    referral_id=referral_id,
                    centre="herning",
                    outcome="follow_up_accepted",
                )
            )
        events += ([*outcomes, fact]) if index % 2 else ([fact, *outcomes])
        if index >= 7:
            events.append(
                ReferralFact(
                    event_id=uuid.uuid4(),
                    occurred_at=at(MONDAY, 50),
                    referral_id=referral_id,
                    decision="withdrawn",
                    offence="drink_driving",
                    municipality_code="657",
                    centre="herning",
                    decided_on=MONDAY + timedelta(days=2),
                )
            )
    for _ in range(8):
        events.append(
            ReferralFact(
                event_id=uuid.uuid4(),
                occurred_at=at(MONDAY, 9),
                referral_id=uuid.uuid4(),
                decision="declined",
                offence="drink_driving",
                municipality_code="657",
                decided_on=MONDAY,
            )
        )
    return events + events  # at-least-once delivery: everything twice


@pytest.mark.slow
def test_facts_and_outcomes_on_the_topics_become_the_funnel(stats_worker, api, kafka_settings):
    produce(kafka_settings, hand_made_events())
    expected = {
        "offered": 20,
        "accepted": 12,
        "declined": 8,
        "withdrawn": 5,
        "first_interviews": 7,
        "follow_ups": 5,
        "acceptance_rate": 0.6,
        "first_interview_rate": 0.5833,
        "follow_up_rate": 0.4167,
    }
    result = wait_until(
        lambda: (lambda body: body if {k: body[k] for k in expected} == expected else None)(funnel(api)),
        timeout=90,
        interval=0.5,
        message=f"the funnel did not reach {expected}; worker log:\n{_tail(stats_worker['log'])}",
    )
    assert result["days_to_first_contact_median"] == 1
    # the worker exposes its counters and the rate gauges (labels: municipality at most)
    metrics = wait_until(
        lambda: (lambda text: text if 'henvis_stats_first_interview_rate{municipality="657"}' in text else None)(
            httpx.get(f"http://127.0.0.1:{stats_worker['metrics_port']}/metrics").text
        ),
        timeout=30,
        ignore=(httpx.TransportError,),
        message="rate gauges not published",
    )
    assert 'henvis_stats_facts_ingested_total{decision="accepted"} 12.0' in metrics
    assert 'henvis_stats_events_skipped_total{reason="duplicate"}' in metrics
    assert "henvis_stats_ingest_lag_seconds" in metrics
    assert "henvis_worker_ready 1.0" in metrics


@pytest.mark.slow
def test_the_pilots_facts_and_outcomes_give_the_status_reports_figures(stats_worker, api, kafka_settings, database_url):
    """The pilot plan's facts and outcomes as the router and centres would publish them
    (computed from the plan; the full-pipeline replay test drives the real services)."""
    plan = generate_pilot()
    produce(kafka_settings, [*plan.outcome_events(), *plan.facts()])
    total_outcomes = sum(len(steps) for steps in plan.outcomes.values())

    def settled():
        body = funnel(api, **{"from": "2021-04-01", "to": "2022-01-31"})
        return body if body["accepted"] == 119 and body["first_interviews"] == 80 and body["follow_ups"] == 38 else None

    body = wait_until(
        settled, timeout=180, interval=1.0, message=f"pilot figures not reached; log:\n{_tail(stats_worker['log'])}"
    )
    assert (body["accepted"], body["first_interview_percent"], body["follow_up_percent"]) == (119, 67, 32)
    assert total_outcomes > 300

    # Nothing of the replayed persons is in the statistics database, on either engine.
    engine = sa.create_engine(database_url, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            dump = "\n".join(
                str(tuple(row))
                for table in sa.inspect(engine).get_table_names()
                for row in conn.execute(sa.text(f"SELECT * FROM {table}"))
            )
    finally:
        engine.dispose()
    for decision in plan.accepted:
        person = decision.person
        for secret in (person.full_name, person.phone[3:], person.cpr, person.email, decision.case_ref):
            assert not secret or secret not in dump
    # and nothing of them in the worker's log either
    log_text = stats_worker["log"].read_text(errors="replace")
    assert not any(decision.person.phone[3:] in log_text or decision.case_ref in log_text for decision in plan.accepted)


@pytest.mark.slow
def test_sigterm_stops_the_worker_cleanly(stats_worker):
    process = stats_worker["process"]
    process.send_signal(signal.SIGTERM)
    assert process.wait() == 0
    assert "stats_worker_stopped" in stats_worker["log"].read_text(errors="replace")


@pytest.mark.slow
def test_stats_serve_is_ready_and_answers_researchers(database_url, tmp_path):
    """`henvis stats serve` as the supervisor starts it: migrates, /readyz 200, figures."""
    port = free_port()
    env = {
        **os.environ,
        "HENVIS_STATS_DATABASE_URL": database_url,
        "HENVIS_API_CLIENTS": CLIENTS,
        "HENVIS_RUN_DIR": str(tmp_path),
    }
    log_path = tmp_path / "serve.log"
    with open(log_path, "wb") as log_file:
        process = subprocess.Popen(
            [sys.executable, "-m", "henvis.cli", "stats", "serve", "--host", "127.0.0.1", "--port", str(port)],
            env=env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    try:
        base = f"http://127.0.0.1:{port}"
        wait_until(
            lambda: httpx.get(f"{base}/readyz").status_code == 200,
            timeout=60,
            ignore=(httpx.TransportError,),
            message=f"stats serve not ready; log:\n{_tail(log_path)}",
        )
        response = httpx.get(f"{base}/v1/funnel", headers={"Authorization": f"Bearer {TOKEN}"})
        assert response.status_code == 200 and response.json()["offered"] == 0
        assert httpx.get(f"{base}/v1/funnel").status_code == 401
        assert "henvis_http_requests_total" in httpx.get(f"{base}/metrics").text
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
