"""On the real broker: centre topic -> `henvis centre worker` -> inbox -> API -> referral.outcomes.v1."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from uuid import uuid4

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from kafka import KafkaConsumer

from henvis.kafka import centre_topic_name, make_producer, topic_name
from henvis.services.centre import database, store_outbox
from henvis.services.centre.api import build_app
from henvis.services.centre.models import referrals
from tests.centre_fakes import (
    KEY_STORE_TOKENS,
    KEYS,
    auth,
    centre_settings,
    key_store_over_http,
    personal_strings,
    referral_issued,
    referral_withdrawn,
)
from tests.helpers import wait_until


class WorkerProcess:
    """`henvis centre worker` as the supervisor runs it, with its JSON log lines collected."""

    def __init__(self, database_url: str, **extra_env: str):
        env = {
            **os.environ,
            # The worker needs the key store for its retention purge; a test that purges passes
            # a served one (key_store_over_http), the others never reach it.
            "HENVIS_CENTRE_KEY_STORE_URL": "http://127.0.0.1:9",
            "HENVIS_CENTRE_KEY_STORE_TOKENS": json.dumps(KEY_STORE_TOKENS),
            **extra_env,
            "HENVIS_CENTRE_DATABASE_URL": database_url,
            "HENVIS_CENTRE_CENTRES": "herning,holstebro",
            "HENVIS_CENTRE_RELAY_INTERVAL_SECONDS": "0.05",
            # the broker's minimum, so a SIGKILLed member is evicted quickly (default 45 s)
            "HENVIS_CENTRE_CONSUMER_SESSION_TIMEOUT_MS": "6000",
        }
        self.process = subprocess.Popen(
            [sys.executable, "-m", "henvis.cli", "centre", "worker"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.process.stdout:
            self.lines.append(line)

    def logged(self, event: str) -> bool:
        return any(f'"event": "{event}"' in line for line in self.lines)

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                return self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                return self.process.wait()
        return self.process.returncode


@pytest.fixture
def worker(database_url, kafka_settings):
    # Retention 0 days and a fast purge tick: the worker's periodic purge becomes observable.
    # The purge destroys each purged referral's key: the worker asks the key store over HTTP.
    with key_store_over_http() as key_store:
        process = WorkerProcess(
            database_url,
            HENVIS_CENTRE_RETENTION_DAYS="0",
            HENVIS_CENTRE_PURGE_INTERVAL_SECONDS="0.2",
            HENVIS_CENTRE_KEY_STORE_URL=key_store,
        )
        yield from _ready(process)


def _ready(process: WorkerProcess):
    try:
        wait_until(
            lambda: process.logged("worker_ready") or process.process.poll() is not None,
            timeout=120,
            message="centre worker did not log worker_ready",
        )
        assert process.process.poll() is None, "".join(process.lines[-20:])
        yield process
    finally:
        process.stop()


def _outcomes_on_topic(kafka_settings, expected: int) -> list[dict]:
    consumer = KafkaConsumer(
        topic_name("referral.outcomes.v1", kafka_settings),
        bootstrap_servers=kafka_settings.bootstrap_servers,
        auto_offset_reset="earliest",
        isolation_level="read_committed",
        group_id=None,
        consumer_timeout_ms=1000,
    )
    seen: list[dict] = []

    def enough():
        for batch in consumer.poll(timeout_ms=500).values():
            seen.extend(json.loads(record.value) | {"_key": record.key.decode()} for record in batch)
        return len({s["event_id"] for s in seen}) >= expected

    try:
        wait_until(enough, timeout=60, message="outcomes did not reach referral.outcomes.v1")
    finally:
        consumer.close()
    return seen


def test_referrals_flow_from_the_centre_topic_to_the_outcomes_topic(database_url, kafka_settings, worker):
    app = build_app(centre_settings(database_url), keys=KEYS)
    engine = app.state.centre.engine
    herning = referral_issued("herning")
    holstebro = referral_issued("holstebro", person_index=1)
    producer = make_producer(kafka_settings, "test-router")
    herning_topic = centre_topic_name("herning", kafka_settings)
    # The router may deliver a referral twice (at-least-once): the inbox must hold it once.
    for _ in range(2):
        producer.send(herning_topic, key=herning.kafka_key(), value=herning.to_bytes())
    producer.send(centre_topic_name("holstebro", kafka_settings), key=holstebro.kafka_key(), value=holstebro.to_bytes())
    producer.flush()

    with TestClient(app, base_url="http://localhost") as client:

        def listed(token):
            return client.get("/v1/referrals?status=all", headers=auth(token)).json()["referrals"]

        wait_until(
            lambda: listed("tok-herning") and listed("tok-holstebro"),
            timeout=60,
            message="referrals did not reach the inbox",
        )
        assert [r["referral_id"] for r in listed("tok-herning")] == [str(herning.referral_id)]
        assert [r["referral_id"] for r in listed("tok-holstebro")] == [str(holstebro.referral_id)]

        for outcome in ("contacted", "first_interview_held", "follow_up_accepted"):
            answer = client.post(
                f"/v1/referrals/{herning.referral_id}/outcomes", json={"outcome": outcome}, headers=auth("tok-herning")
            )
            assert answer.status_code == 201
        assert listed("tok-herning")[0]["status"] == "closed"

        def herning_row():
            with engine.connect() as conn:
                return conn.execute(
                    sa.select(referrals).where(referrals.c.referral_id == str(herning.referral_id))
                ).one()

        # The worker's periodic purge erases a closed referral's details once the retention has passed.
        wait_until(lambda: herning_row().contact_erased_at is not None, timeout=60, message="the worker never purged")
        assert herning_row().personal_sealed is None and herning_row().state == "follow_up_accepted"

        # Withdrawal end to end: the contact details are erased from the row within seconds.
        withdrawal = referral_withdrawn(holstebro.referral_id, "holstebro")
        producer.send(
            centre_topic_name("holstebro", kafka_settings), key=withdrawal.kafka_key(), value=withdrawal.to_bytes()
        )
        producer.flush()
        producer.close()

        def erased_row():
            with engine.connect() as conn:
                row = conn.execute(
                    sa.select(referrals).where(referrals.c.referral_id == str(holstebro.referral_id))
                ).one()
            return row if row.state == "withdrawn" else None

        row = wait_until(erased_row, timeout=60, message="withdrawal did not reach the inbox")
        assert row.personal_sealed is None and row.person_full_name is None and row.case_ref is None
        assert (
            client.get(f"/v1/referrals/{holstebro.referral_id}", headers=auth("tok-holstebro")).json()["person"] is None
        )

    published = _outcomes_on_topic(kafka_settings, expected=4)
    by_referral = {}
    for event in published:
        by_referral.setdefault(event["referral_id"], []).append(event["outcome"])
        assert event["_key"] == event["referral_id"]
    assert by_referral[str(herning.referral_id)] == ["contacted", "first_interview_held", "follow_up_accepted"]
    assert by_referral[str(holstebro.referral_id)] == ["withdrawal_acknowledged"]
    assert not any(value in json.dumps(published) for value in personal_strings())
    wait_until(lambda: not store_outbox.pending_outbox(engine), timeout=30, message="outbox rows not marked sent")

    assert worker.stop() == 0
    logs = "".join(worker.lines)
    assert worker.logged("worker_stopped")
    assert not any(value in logs for value in personal_strings())
    engine.dispose()


@pytest.mark.slow
def test_a_worker_killed_mid_stream_loses_and_duplicates_no_referral(database_url, kafka_settings):
    events = [referral_issued("herning", person_index=i) for i in range(150)]
    producer = make_producer(kafka_settings, "test-router")
    for event in events:
        producer.send(centre_topic_name("herning", kafka_settings), key=event.kafka_key(), value=event.to_bytes())
    producer.flush()
    producer.close()
    engine = database.make_centre_engine(database_url)

    def inbox_ids() -> list[str]:
        try:
            with engine.connect() as conn:
                return list(conn.execute(sa.select(referrals.c.referral_id)).scalars())
        except sa.exc.DBAPIError:  # the worker has not created the tables yet
            return []

    first = WorkerProcess(database_url)
    try:
        wait_until(
            lambda: inbox_ids() or first.process.poll() is not None,
            timeout=120,
            interval=0.01,
            message="the first worker stored nothing",
        )
    finally:
        first.process.kill()  # SIGKILL: no chance to commit offsets or close cleanly
        first.process.wait()
    assert len(inbox_ids()) < len(events), "the worker finished before it was killed; the test proves nothing"

    second = WorkerProcess(database_url)
    try:
        wait_until(lambda: len(inbox_ids()) >= len(events), timeout=120, message="referrals lost after SIGKILL")
        assert sorted(inbox_ids()) == sorted(str(event.referral_id) for event in events)
    finally:
        assert second.stop() == 0
        engine.dispose()


@pytest.mark.slow
def test_router_output_reaches_the_inbox_and_a_withdrawal_erases_it(database_url, kafka_settings, tmp_path):
    """consent.decisions.v2 -> real `henvis router worker` -> referrals.herning.v2 -> centre worker -> inbox."""
    from datetime import UTC, datetime

    from henvis.kafka import ensure_topics, henvis_topics
    from henvis.registry import load_registry
    from henvis.schemas.events import ConsentGiven, ConsentWithdrawn, referral_id_for
    from henvis_dev import loadgen

    ensure_topics(kafka_settings, henvis_topics(kafka_settings, load_registry()))
    router = loadgen.RouterProcess(
        {"HENVIS_ROUTER_SESSION_TIMEOUT_SECONDS": "6"},
        tmp_path / "router.log",
    ).start()
    centre_worker = WorkerProcess(database_url)
    try:
        now = datetime.now(UTC)
        consent = ConsentGiven(
            event_id=uuid4(),
            occurred_at=now,
            case_ref="4100-80261-00777-26",
            offence="drink_driving",
            charged_on=now.date(),
            municipality_code="657",
            consent_text_version="2020-03",
            recorded_by="politi-1234",
            person={
                "full_name": "Mette Kjær Sørensen",
                "phone": "+4521436587",
                "postal_address": {"street": "Vestergade 14, 1. tv.", "postcode": "7400", "city": "Herning"},
            },
        )
        referral_id = str(referral_id_for(consent.event_id))
        data_keys: dict = {}
        published = loadgen.sealed(consent, data_keys)  # as the consent relay publishes it
        KEYS.keys[referral_id] = ("centre:herning", data_keys[referral_id_for(consent.event_id)])
        producer = make_producer(kafka_settings, "test-consent-relay")
        decisions = topic_name("consent.decisions.v2", kafka_settings)
        producer.send(decisions, key=published.kafka_key(), value=published.to_bytes())
        producer.flush()

        app = build_app(centre_settings(database_url), keys=KEYS)
        engine = app.state.centre.engine
        with TestClient(app, base_url="http://localhost") as client:

            def detail():
                answer = client.get(f"/v1/referrals/{referral_id}", headers=auth("tok-herning"))
                return answer.json() if answer.status_code == 200 else None

            referral = wait_until(detail, timeout=180, message="the router's referral did not reach the Herning inbox")
            assert referral["person"]["full_name"] == "Mette Kjær Sørensen"
            assert referral["contact_due_by"] > now.date().isoformat()
            assert client.get(f"/v1/referrals/{referral_id}", headers=auth("tok-holstebro")).status_code == 404
            assert (
                client.post(
                    f"/v1/referrals/{referral_id}/outcomes",
                    json={"outcome": "contact_attempted"},
                    headers=auth("tok-herning"),
                ).status_code
                == 201
            )

            withdrawal = loadgen.sealed(
                ConsentWithdrawn(
                    event_id=uuid4(),
                    occurred_at=datetime.now(UTC),
                    case_ref=consent.case_ref,
                    reason="person_changed_mind",
                ),
                data_keys,
            )
            del KEYS.keys[referral_id]  # the consent service destroys the key when it accepts the withdrawal
            producer.send(decisions, key=withdrawal.kafka_key(), value=withdrawal.to_bytes())
            producer.flush()
            producer.close()
            wait_until(
                lambda: (detail() or {}).get("status") == "withdrawn",
                timeout=180,
                message="the withdrawal did not reach the inbox",
            )
            with engine.connect() as conn:
                row = conn.execute(sa.select(referrals).where(referrals.c.referral_id == referral_id)).one()
            assert row.personal_sealed is None and row.person_full_name is None

        outcomes = _outcomes_on_topic(kafka_settings, expected=2)
        assert [o["outcome"] for o in outcomes if o["referral_id"] == referral_id] == [
            "contact_attempted",
            "withdrawal_acknowledged",
        ]
        engine.dispose()
    finally:
        centre_worker.stop()
        router.stop()
