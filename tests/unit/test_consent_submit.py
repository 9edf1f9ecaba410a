"""``henvis consent submit``: validation before sending, retries, aborts and reruns."""

from __future__ import annotations

import json

from fastapi.testclient import TestClient

from henvis.db import make_engine
from henvis.registry import load_registry
from henvis.services.consent.api import create_consent_app
from henvis.services.consent.batch import check_lines
from henvis.services.consent.settings import ConsentSettings
from henvis.services.consent.submit import send_items
from tests import examples
from tests.consent_support import KEY_SETTINGS, POLICE, client_registry, consent_app
from tests.helpers import free_port


def test_repeated_lines_are_sent_once_and_a_reused_event_id_is_an_error() -> None:
    event = examples.consent_declined()
    lines = [json.dumps(event), json.dumps(event), json.dumps({**event, "offence": "drink_driving"})]
    checked = check_lines(lines, load_registry())
    assert checked.duplicates == 1
    assert checked.errors == ["line 3: event_id: already used on line 1 for a different event"]


def test_each_event_goes_to_its_endpoint_in_file_order() -> None:
    given = examples.consent_given()
    lines = [json.dumps(given), json.dumps(examples.consent_withdrawn(case_ref=given["case_ref"]))]
    checked = check_lines(lines, load_registry())
    assert [(item.line, item.path) for item in checked.items] == [(1, "/v1/decisions"), (2, "/v1/withdrawals")]


def test_sending_twice_counts_the_second_run_as_already_accepted(tmp_path) -> None:
    lines = [json.dumps(examples.consent_declined()) for _ in range(5)]
    items = check_lines(lines, load_registry()).items
    client = TestClient(consent_app(f"sqlite:///{tmp_path / 'c.db'}"), headers=POLICE)
    first, second = send_items(items, client), send_items(items, client)
    assert (first.accepted, first.already_there, first.failed) == (5, 0, [])
    assert (second.accepted, second.already_there, second.failed) == (0, 5, [])


def test_an_unavailable_service_is_retried_then_reported_per_line(tmp_path) -> None:
    url = f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/nothing?connect_timeout=1"
    app = create_consent_app(
        ConsentSettings(database_url=url, **KEY_SETTINGS), engine=make_engine(url), clients=client_registry()
    )
    items = check_lines([json.dumps(examples.consent_declined())], load_registry()).items
    waits: list[float] = []
    report = send_items(items, TestClient(app, headers=POLICE), attempts=3, sleep=waits.append)
    assert len(waits) == 2  # three attempts, backing off between them
    assert report.failed and report.failed[0].startswith("line 1: the service is unavailable (503)")


def test_a_refused_credential_stops_the_run(tmp_path) -> None:
    lines = [json.dumps(examples.consent_declined()) for _ in range(3)]
    items = check_lines(lines, load_registry()).items
    client = TestClient(consent_app(f"sqlite:///{tmp_path / 'c.db'}"), headers={"Authorization": "Bearer wrong"})
    report = send_items(items, client)
    assert report.aborted and "401" in report.aborted
    assert report.accepted == 0
