"""A case system on the FHIR endpoint records outcomes, and the statistics count them exactly as
the inbox's: the fhirclient package (a real SMART-on-FHIR client) against the centre served by
uvicorn -> the centre's outbox relay -> the real broker -> `henvis stats worker` (a real
process) -> `GET /v1/funnel`.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient
from fhir.resources.R4B import get_fhir_model_class
from fhirclient.models.codeableconcept import CodeableConcept
from fhirclient.models.task import Task
from fhirclient.server import FHIRServer

from henvis.auth import hash_token
from henvis.kafka import make_producer, topic_name
from henvis.schemas.events import ReferralFact
from henvis.schemas.topics import REFERRAL_FACTS
from henvis.services.centre import store_intake
from henvis.services.centre.api import build_app
from henvis.services.centre.worker import relay_once
from henvis.services.stats.api import create_stats_app
from henvis.services.stats.settings import StatsSettings
from tests.centre_fakes import KEYS, auth, centre_settings, referral_issued
from tests.helpers import free_port, served, wait_until
from tests.integration.test_stats_worker import stats_worker_running

RESEARCHER = "researcher-token-for-fhir-tests"
CLIENTS = json.dumps([{"name": "researcher", "role": "researcher", "token_sha256": hash_token(RESEARCHER)}])
STATE = "urn:henvis:fhir:referral-state"


def _accepted_fact(referral_id: uuid.UUID) -> ReferralFact:
    """What the router publishes for each referral it issues (the funnel counts from it)."""
    today = datetime.now(UTC).date()
    return ReferralFact(
        event_id=uuid.uuid4(),
        occurred_at=datetime.now(UTC),
        referral_id=referral_id,
        decision="accepted",
        offence="drink_driving",
        municipality_code="657",
        centre="herning",
        decided_on=today,
        contact_due_by=today + timedelta(days=1),
    )


def _parsed(response, answers: list[str]) -> None:
    """A ``requests`` response hook: the answer parses as its FHIR resource, noted in ``answers``."""
    assert response.status_code == 200, response.text
    body = response.json()
    get_fhir_model_class(body["resourceType"]).model_validate(body)
    answers.append(body["resourceType"])


def _record(server: FHIRServer, referral_id: str, code: str, status: str) -> Task:
    """Read the Task, set its status/businessStatus, PUT it back with If-Match on its version."""
    task = Task.read(referral_id, server)
    task.status = status
    task.businessStatus = CodeableConcept({"coding": [{"system": STATE, "code": code}]})
    server.session.headers["If-Match"] = f'W/"{task.meta.versionId}"'
    try:
        return Task(task.update(server))
    finally:
        del server.session.headers["If-Match"]


@pytest.mark.slow
def test_outcomes_recorded_over_fhir_reach_the_funnel_like_the_inbox_ones(kafka_settings, tmp_path):
    centre_app = build_app(centre_settings(f"sqlite:///{tmp_path / 'centre.db'}"), keys=KEYS)
    engine = centre_app.state.centre.engine
    issued = [referral_issued("herning", person_index=index) for index in range(4)]
    for event in issued:
        assert store_intake.ingest_issued(engine, event, "herning") == "stored"
    producer = make_producer(kafka_settings, "test-router")
    for event in issued:
        fact = _accepted_fact(event.referral_id)
        producer.send(topic_name(REFERRAL_FACTS.name, kafka_settings), key=fact.kafka_key(), value=fact.to_bytes())
    producer.flush()

    stats_url = f"sqlite:///{tmp_path / 'stats.db'}"
    stats_app = create_stats_app(StatsSettings(database_url=stats_url, api_clients=CLIENTS, suppression_threshold=2))

    def funnel() -> dict:
        answer = stats.get("/v1/funnel", headers={"Authorization": f"Bearer {RESEARCHER}"})
        assert answer.status_code == 200
        return answer.json()

    def reaches(first_interviews: int, follow_ups: int):
        return lambda: (lambda body: body["first_interviews"] == first_interviews and body["follow_ups"] == follow_ups)(
            funnel()
        )

    with (
        served(centre_app, free_port()) as url,
        stats_worker_running(stats_url, tmp_path),
        TestClient(stats_app) as stats,
    ):
        server = FHIRServer(None, base_uri=f"{url}/fhir/999900000000657/")  # Herning, by its SOR id
        server.session.headers["Authorization"] = "Bearer tok-herning"
        answers: list[str] = []
        server.session.hooks["response"].append(lambda response, **_: _parsed(response, answers))
        open_tasks = list(Task.where(struct={"status": "requested"}).perform_resources_iter(server))
        assert sorted(task.id for task in open_tasks) == sorted(str(event.referral_id) for event in issued)

        # Two referrals through FHIR, contact -> first interview -> follow-up.
        for event in issued[:2]:
            referral_id = str(event.referral_id)
            _record(server, referral_id, "contacted", "in-progress")
            _record(server, referral_id, "first_interview_held", "in-progress")
            done = _record(server, referral_id, "follow_up_accepted", "completed")
            assert done.status == "completed" and done.meta.versionId == "4"
        assert relay_once(engine, producer, centre_app.state.centre.settings) == 6
        wait_until(reaches(2, 2), timeout=90, interval=0.5, message="FHIR outcomes did not reach the funnel")
        assert funnel()["accepted"] == 4

        # Two through the inbox's own API: the funnel counts them the same way.
        with TestClient(centre_app, base_url="http://localhost") as inbox:
            for event in issued[2:]:
                for outcome in ("contacted", "first_interview_held", "follow_up_accepted"):
                    answer = inbox.post(
                        f"/v1/referrals/{event.referral_id}/outcomes",
                        json={"outcome": outcome},
                        headers=auth("tok-herning"),
                    )
                    assert answer.status_code == 201
        assert relay_once(engine, producer, centre_app.state.centre.settings) == 6
        wait_until(reaches(4, 4), timeout=90, interval=0.5, message="inbox outcomes did not reach the funnel")
        assert list(Task.where(struct={"status": "requested"}).perform_resources_iter(server)) == []
    # every answer the client got was FHIR R4 to fhir.resources too (fhirclient parsed them itself)
    assert answers.count("Task") == 12 and answers.count("Bundle") == 2
    producer.close()
    engine.dispose()
