"""Every status code of the police API, on SQLite and PostgreSQL."""

from __future__ import annotations

import base64
import json
import threading
import uuid

import pytest
from fastapi.testclient import TestClient
from prometheus_client import REGISTRY
from sqlalchemy import select
from sqlalchemy.event import listen as event_listen
from sqlalchemy.event import remove as event_remove

from henvis.services.consent import store
from henvis.services.consent.models import consent_outbox
from henvis.shredding import open_personal_data
from tests import examples
from tests.consent_support import (
    HERNING_TOKEN,
    KEY_SETTINGS,
    POLICE,
    RESEARCHER_TOKEN,
    SECRET_NAME,
    consent_app,
    protection,
    secret_person,
    secrets,
)


@pytest.fixture
def api(database_url: str) -> TestClient:
    app = consent_app(database_url)
    with TestClient(app) as client:
        yield client
    app.state.engine.dispose()


def _outbox(api: TestClient) -> list:
    with api.app.state.engine.connect() as conn:
        return conn.execute(select(consent_outbox).order_by(consent_outbox.c.id)).all()


def _metric(name: str, **labels) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_first_decision_is_202_and_durable_in_the_outbox(api: TestClient) -> None:
    event = examples.consent_given(person=secret_person())
    before = _metric("henvis_consent_decisions_accepted_total", decision="given")

    response = api.post("/v1/decisions", json=event, headers=POLICE)

    assert response.status_code == 202
    assert response.json()["event_id"] == event["event_id"]
    assert response.json()["status"] == "accepted"
    [row] = _outbox(api)
    pseudonyms = protection().pseudonyms
    assert row.kafka_key == pseudonyms(event["case_ref"])  # never the case number itself
    assert not any(secret in row.payload + row.kafka_key for secret in secrets())
    published = json.loads(row.payload)
    referral_id = response.json()["referral_id"]
    released = api.get(f"/v1/data-keys/{referral_id}", headers={"Authorization": f"Bearer {HERNING_TOKEN}"})
    data_key = base64.b64decode(released.json()["data_key"])
    opened = json.loads(open_personal_data(data_key, uuid.UUID(referral_id), published["personal"]))
    assert opened["person"]["phone"] == "+4529384756"  # normalised on the way in
    assert row.sent_at is None
    assert _metric("henvis_consent_decisions_accepted_total", decision="given") == before + 1


def test_the_same_event_again_is_200_with_the_original_result_and_stored_once(api: TestClient) -> None:
    event = examples.consent_declined()
    first = api.post("/v1/decisions", json=event, headers=POLICE)
    again = api.post("/v1/decisions", json=dict(reversed(list(event.items()))), headers=POLICE)
    assert (first.status_code, again.status_code) == (202, 200)
    assert again.json() == first.json()
    assert len(_outbox(api)) == 1


def test_a_different_event_under_a_known_event_id_is_409(api: TestClient) -> None:
    event = examples.consent_declined()
    assert api.post("/v1/decisions", json=event, headers=POLICE).status_code == 202
    response = api.post("/v1/decisions", json={**event, "offence": "drink_driving"}, headers=POLICE)
    assert response.status_code == 409
    assert response.json()["errors"][0]["field"] == "event_id"
    assert len(_outbox(api)) == 1


def test_concurrent_posts_of_one_event_store_it_once(api: TestClient) -> None:
    event = examples.consent_given()
    statuses: list[int] = []

    def post() -> None:
        statuses.append(api.post("/v1/decisions", json=event, headers=POLICE).status_code)

    threads = [threading.Thread(target=post) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(statuses) == [200] * 7 + [202]
    assert len(_outbox(api)) == 1


@pytest.mark.parametrize(
    ("headers", "challenge"),
    [
        ({}, "Bearer"),
        ({"Authorization": "Bearer not-a-real-token"}, 'Bearer error="invalid_token"'),  # RFC 6750 §3.1
        ({"Authorization": "Basic cG9saXRpOnNlY3JldA=="}, "Bearer"),
    ],
    ids=["missing", "unknown-token", "not-bearer"],
)
def test_without_a_valid_credential_it_is_401(api: TestClient, headers: dict, challenge: str) -> None:
    response = api.post("/v1/decisions", json=examples.consent_declined(), headers=headers)
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == challenge
    assert _outbox(api) == []


def test_a_credential_with_another_role_is_403(api: TestClient) -> None:
    headers = {"Authorization": f"Bearer {RESEARCHER_TOKEN}"}
    assert api.post("/v1/decisions", json=examples.consent_declined(), headers=headers).status_code == 403
    assert api.post("/v1/withdrawals", json=examples.consent_withdrawn(), headers=headers).status_code == 403
    assert _outbox(api) == []


def test_credential_is_checked_before_the_body(api: TestClient) -> None:
    response = api.post("/v1/decisions", content=b"{not json", headers={"Content-Type": "application/json"})
    assert response.status_code == 401


def test_a_body_that_is_not_json_is_415(api: TestClient) -> None:
    response = api.post(
        "/v1/decisions", content=b"event_id=1", headers={**POLICE, "Content-Type": "application/x-www-form-urlencoded"}
    )
    assert response.status_code == 415


def test_an_oversized_body_is_413_whether_declared_or_streamed(api: TestClient) -> None:
    big = examples.consent_given(recorded_by="x" * 10, padding="y" * 70_000)
    declared = api.post("/v1/decisions", json=big, headers=POLICE)

    def chunks():
        for _ in range(70):
            yield b"x" * 1024

    streamed = api.post("/v1/decisions", content=chunks(), headers={**POLICE, "Content-Type": "application/json"})
    assert (declared.status_code, streamed.status_code) == (413, 413)
    assert declared.json()["errors"][0]["field"] == "body"
    assert _outbox(api) == []


@pytest.mark.parametrize(
    ("event", "field"),
    [
        (examples.consent_given(person=secret_person() | {"phone": "+46 70 123 45 67"}), "person.phone"),
        (examples.consent_given(person=secret_person() | {"cpr": "3113851234"}), "person.cpr"),
        (examples.consent_given(preferred_centre="aarhus"), "preferred_centre"),
        (examples.consent_given(municipality_code="999"), "municipality_code"),
        (examples.consent_declined(person=secret_person()), "person"),
        (examples.consent_given(occurred_at="2021-03-02T10:15:00"), "occurred_at"),
        ({**examples.consent_given(), "event_type": f"consent.given {SECRET_NAME}"}, "event_type"),
    ],
    ids=[
        "foreign-phone",
        "cpr-no-date",
        "unknown-centre",
        "unknown-municipality",
        "declined-with-person",
        "naive-time",
        "unknown-type",
    ],
)
def test_invalid_decisions_are_422_naming_the_field_without_echoing_values(
    api: TestClient, event: dict, field: str
) -> None:
    response = api.post("/v1/decisions", json=event, headers=POLICE)
    assert response.status_code == 422
    body = response.json()
    assert field in [error["field"] for error in body["errors"]]
    assert body["detail"].startswith("The event was not accepted")
    for secret in secrets():
        assert secret not in response.text
    assert _outbox(api) == []


def test_malformed_json_is_422_on_body(api: TestClient) -> None:
    response = api.post(
        "/v1/decisions", content=b'{"event_id": ', headers={**POLICE, "Content-Type": "application/json"}
    )
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "body"


def test_withdrawal_by_referral_id_goes_out_with_the_case_pseudonym(api: TestClient) -> None:
    given = examples.consent_given()
    referral_id = api.post("/v1/decisions", json=given, headers=POLICE).json()["referral_id"]
    withdrawal = examples.consent_withdrawn(case_ref=None, referral_id=referral_id)

    response = api.post("/v1/withdrawals", json={k: v for k, v in withdrawal.items() if v is not None}, headers=POLICE)

    assert response.status_code == 202
    published = json.loads(_outbox(api)[-1].payload)
    assert published["case_pseudonym"] == protection().pseudonyms(given["case_ref"])
    assert published["referral_id"] == referral_id
    assert _outbox(api)[-1].kafka_key == published["case_pseudonym"]


def test_withdrawal_by_case_ref_is_202(api: TestClient) -> None:
    response = api.post("/v1/withdrawals", json=examples.consent_withdrawn(), headers=POLICE)
    assert response.status_code == 202
    assert api.post("/v1/withdrawals", json=examples.consent_withdrawn(), headers=POLICE).status_code == 202


def test_withdrawal_of_an_unknown_referral_is_422_on_referral_id(api: TestClient) -> None:
    withdrawal = {k: v for k, v in examples.consent_withdrawn(referral_id=str(uuid.uuid4())).items() if k != "case_ref"}
    response = api.post("/v1/withdrawals", json=withdrawal, headers=POLICE)
    assert response.status_code == 422
    assert [error["field"] for error in response.json()["errors"]] == ["referral_id"]


def test_withdrawal_naming_nothing_is_422(api: TestClient) -> None:
    withdrawal = {k: v for k, v in examples.consent_withdrawn().items() if k != "case_ref"}
    response = api.post("/v1/withdrawals", json=withdrawal, headers=POLICE)
    assert response.status_code == 422


def test_health_readiness_and_metrics(api: TestClient) -> None:
    api.post("/v1/decisions", json=examples.consent_declined(), headers=POLICE)
    assert api.get("/healthz").status_code == 200
    assert api.get("/readyz").json() == {"status": "ready"}
    metrics = api.get("/metrics").text
    assert "henvis_consent_outbox_backlog 1.0" in metrics
    assert "henvis_consent_rejected_total" in metrics


def test_rejections_are_counted_by_reason(api: TestClient) -> None:
    before = _metric("henvis_consent_rejected_total", reason="unknown_centre")
    api.post("/v1/decisions", json=examples.consent_given(preferred_centre="aarhus"), headers=POLICE)
    assert _metric("henvis_consent_rejected_total", reason="unknown_centre") == before + 1


def test_refusals_without_a_handler_reason_are_counted_by_status(api: TestClient) -> None:
    before = {
        reason: _metric("henvis_consent_rejected_total", reason=reason) for reason in ("unauthenticated", "too_large")
    }
    assert api.post("/v1/decisions", json=examples.consent_given()).status_code == 401
    oversized = b"{" + b" " * (70 * 1024) + b"}"
    assert (
        api.post("/v1/decisions", content=oversized, headers={**POLICE, "Content-Type": "application/json"}).status_code
        == 413
    )
    assert _metric("henvis_consent_rejected_total", reason="unauthenticated") == before["unauthenticated"] + 1
    assert _metric("henvis_consent_rejected_total", reason="too_large") == before["too_large"] + 1


def test_when_the_database_is_unreachable_it_is_503_never_2xx(tmp_path) -> None:
    from henvis.db import make_engine
    from henvis.services.consent.api import create_consent_app
    from henvis.services.consent.settings import ConsentSettings
    from tests.consent_support import client_registry
    from tests.helpers import free_port

    url = f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/nothing?connect_timeout=2"
    app = create_consent_app(
        ConsentSettings(database_url=url, **KEY_SETTINGS), engine=make_engine(url), clients=client_registry()
    )
    client = TestClient(app)
    given = examples.consent_given()
    assert client.post("/v1/decisions", json=given, headers=POLICE).status_code == 503
    withdrawal = {k: v for k, v in examples.consent_withdrawn(referral_id=str(uuid.uuid4())).items() if k != "case_ref"}
    assert client.post("/v1/withdrawals", json=withdrawal, headers=POLICE).status_code == 503
    assert client.get("/readyz").status_code == 503
    assert client.get("/healthz").status_code == 200


def test_accept_writes_event_and_outbox_row_together(database_url: str, monkeypatch) -> None:
    """A failed outbox write leaves no idempotency record behind (one transaction)."""
    from henvis.schemas.events import parse_decision
    from henvis.services.consent import domain
    from tests.consent_support import migrated_engine

    def unpublishable(*_args, **_kwargs):
        raise RuntimeError("outbox write failed")

    engine = migrated_engine(database_url)
    event = parse_decision(examples.consent_declined())
    monkeypatch.setattr(domain, "published_event", unpublishable)
    with pytest.raises(RuntimeError):
        store.accept(engine, event, "politi-test", protection())
    monkeypatch.undo()
    assert store.accept(engine, event, "politi-test", protection()).verdict.value == "new"
    assert store.backlog(engine).unsent == 1
    engine.dispose()


def test_a_failed_outbox_insert_rolls_back_the_idempotency_record(database_url: str) -> None:
    """The two rows of a new event are written in one transaction: the outbox insert fails
    after the idempotency record was written, and the record is gone with it."""
    from henvis.schemas.events import parse_decision
    from tests.consent_support import migrated_engine

    def fail_on_the_outbox(_conn, _cursor, statement: str, *_args) -> None:
        if statement.lstrip().upper().startswith("INSERT INTO CONSENT_OUTBOX"):
            raise RuntimeError("outbox write failed")

    engine = migrated_engine(database_url)
    event = parse_decision(examples.consent_declined())
    event_listen(engine, "before_cursor_execute", fail_on_the_outbox)
    with pytest.raises(RuntimeError):
        store.accept(engine, event, "politi-test", protection())
    event_remove(engine, "before_cursor_execute", fail_on_the_outbox)
    assert store.accept(engine, event, "politi-test", protection()).verdict.value == "new"
    assert store.backlog(engine).unsent == 1
    engine.dispose()
