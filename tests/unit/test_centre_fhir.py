"""The centre's FHIR R4 endpoint as a case system uses it (SQLite and PostgreSQL).

Every answer is parsed twice: by fhir.resources (the models the endpoint builds with) and by
the fhirclient package's FHIR R4 (4.0.1) models, which refuse unknown elements and missing
required ones, so "it is FHIR R4" is checked by a second, independent implementation.
"""

from __future__ import annotations

import json
import re
import uuid
from datetime import UTC, datetime
from functools import partial
from pathlib import Path

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from fhir.resources.R4B import get_fhir_model_class
from fhirclient.models.fhirelementfactory import FHIRElementFactory

from henvis.services.centre import casework, domain, store_intake
from henvis.services.centre.api import build_app
from henvis.services.centre.domain_fhir import TASK_STATUS, TASK_STATUSES, BadSearch, date_filter
from henvis.services.centre.domain_outcomes import VersionConflict
from henvis.services.centre.models import access_log, outbox, referrals
from tests.centre_fakes import KEYS, PEOPLE, auth, centre_settings, referral_issued, referral_withdrawn

ROOT = Path(__file__).resolve().parents[2]
HERNING = "/fhir/herning"
HERNING_SOR = "/fhir/999900000000657"
STATE = "urn:henvis:fhir:referral-state"


@pytest.fixture
def centre(database_url):
    app = build_app(centre_settings(database_url, centres="herning,holstebro,viborg"), keys=KEYS)
    engine = app.state.centre.engine
    with TestClient(app, base_url="http://localhost") as client:
        yield client, engine
    engine.dispose()


def fhir(response, status: int = 200) -> dict:
    """The answer's FHIR resource, after both R4 parsers accepted it."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/fhir+json")
    body = response.json()
    get_fhir_model_class(body["resourceType"]).model_validate(body)
    FHIRElementFactory.instantiate(body["resourceType"], body)  # strict: raises on anything not R4
    for entry in body.get("entry", []):
        FHIRElementFactory.instantiate(entry["resource"]["resourceType"], entry["resource"])
    return body


def _issue(engine, centre="herning", person_index=0) -> str:
    event = referral_issued(centre, person_index=person_index)
    assert store_intake.ingest_issued(engine, event, centre) == "stored"
    return str(event.referral_id)


def _set_status(code: str, status: str) -> list[dict]:
    return [
        {"op": "replace", "path": "/status", "value": status},
        {"op": "replace", "path": "/businessStatus", "value": {"coding": [{"system": STATE, "code": code}]}},
    ]


def _patch(client, referral_id, operations, version, token="tok-herning", base=HERNING):
    headers = {**auth(token), "Content-Type": "application/json-patch+json", "If-Match": f'W/"{version}"'}
    return client.patch(f"{base}/Task/{referral_id}", content=json.dumps(operations), headers=headers)


def _outcome_events(engine) -> list[dict]:
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(outbox.c.payload).where(outbox.c.topic_base == "referral.outcomes.v1").order_by(outbox.c.id)
        )
        return [json.loads(row.payload) for row in rows]


def _state(engine, referral_id) -> str:
    with engine.connect() as conn:
        return conn.execute(sa.select(referrals.c.state).where(referrals.c.referral_id == referral_id)).scalar_one()


def test_metadata_describes_the_endpoint_at_slug_and_sor_id(centre):
    client, _ = centre
    by_slug = fhir(client.get(f"{HERNING}/metadata"))
    by_sor = fhir(client.get(f"{HERNING_SOR}/metadata"))
    assert by_slug["fhirVersion"] == "4.0.1" and by_slug["kind"] == "instance"
    assert by_sor["rest"] == by_slug["rest"]
    task = next(r for r in by_slug["rest"][0]["resource"] if r["type"] == "Task")
    assert {i["code"] for i in task["interaction"]} == {"read", "search-type", "update", "patch"}
    assert {p["name"] for p in task["searchParam"]} == {"_id", "status", "authored-on"}
    assert set(task["searchInclude"]) == {"Task:focus", "Task:patient", "Task:based-on", "Task:requester", "Task:owner"}
    missing = fhir(client.get("/fhir/aarhus/metadata"), 404)
    assert missing["resourceType"] == "OperationOutcome" and missing["issue"][0]["code"] == "not-found"


def test_herning_pulls_open_tasks_with_everything_and_records_contact_interview_follow_up(centre):
    client, engine = centre
    first, second = _issue(engine), _issue(engine, person_index=1)
    _issue(engine, "holstebro", person_index=2)
    query = "status=requested,accepted,in-progress" + "".join(
        f"&_include={inc}" for inc in ("Task:focus", "Task:patient", "Task:based-on", "Task:requester", "Task:owner")
    )
    bundle = fhir(client.get(f"{HERNING_SOR}/Task?{query}", headers=auth("tok-herning")))
    assert bundle["type"] == "searchset" and bundle["total"] == 2
    matched = [e["resource"] for e in bundle["entry"] if e["search"]["mode"] == "match"]
    assert {t["id"] for t in matched} == {first, second}
    assert all(t["status"] == "requested" and t["businessStatus"]["coding"][0]["code"] == "new" for t in matched)
    included = {
        (e["resource"]["resourceType"], e["resource"]["id"])
        for e in bundle["entry"]
        if e["search"]["mode"] == "include"
    }
    for kind in ("ServiceRequest", "Patient", "Consent"):
        assert {(kind, first), (kind, second)} <= included
    assert {("Organization", "herning"), ("Organization", "police-district")} <= included
    patient = next(
        e["resource"]
        for e in bundle["entry"]
        if e["resource"]["resourceType"] == "Patient" and e["resource"]["id"] == first
    )
    assert patient["name"][0]["text"] == PEOPLE[0][0]
    owner = next(
        e["resource"]
        for e in bundle["entry"]
        if e["resource"]["resourceType"] == "Organization" and e["resource"]["id"] == "herning"
    )
    assert owner["identifier"][0]["use"] == "temp"  # the SOR id is a marked placeholder

    contacted = fhir(_patch(client, first, _set_status("contacted", "in-progress"), 1))
    assert contacted["meta"]["versionId"] == "2" and contacted["status"] == "in-progress"
    read = client.get(f"{HERNING}/Task/{first}", headers=auth("tok-herning"))
    assert read.headers["etag"] == 'W/"2"'
    task = fhir(read)
    task["status"] = "in-progress"
    task["businessStatus"] = {"coding": [{"system": STATE, "code": "first_interview_held"}]}
    put = client.put(
        f"{HERNING}/Task/{first}",
        content=json.dumps(task),
        headers={**auth("tok-herning"), "Content-Type": "application/fhir+json", "If-Match": read.headers["etag"]},
    )
    assert fhir(put)["meta"]["versionId"] == "3"
    done = fhir(_patch(client, first, _set_status("follow_up_accepted", "completed"), 3))
    assert done["status"] == "completed" and done["businessStatus"]["coding"][0]["code"] == "follow_up_accepted"

    # The same outcome again, even against the old version, is the same answer and no new event.
    again = fhir(_patch(client, first, _set_status("follow_up_accepted", "completed"), 3))
    assert again["meta"]["versionId"] == "4"
    events = _outcome_events(engine)
    assert [(e["referral_id"], e["outcome"]) for e in events] == [
        (first, "contacted"),
        (first, "first_interview_held"),
        (first, "follow_up_accepted"),
    ]
    assert all(e["centre"] == "herning" for e in events)
    # Only open ones now, and the completed one is found by its status.
    still_open = fhir(client.get(f"{HERNING}/Task?status=requested,in-progress", headers=auth("tok-herning")))
    assert [e["resource"]["id"] for e in still_open["entry"]] == [second]
    completed = fhir(
        client.get(f"{HERNING}/Task?status=completed&_id={first}&_format=json", headers=auth("tok-herning"))
    )
    assert completed["total"] == 1
    for nothing in ("status=on-hold", "status=completed&status=requested"):  # no state; both at once
        assert fhir(client.get(f"{HERNING}/Task?{nothing}", headers=auth("tok-herning")))["total"] == 0
    with engine.connect() as conn:
        actions = (
            conn.execute(
                sa.select(access_log.c.action).where(access_log.c.referral_id == first).order_by(access_log.c.id)
            )
            .scalars()
            .all()
        )
    assert actions[0] == "view_contact_details"  # the included Patient was a look at the details
    assert [a for a in actions if a.startswith("outcome_recorded")] == [
        "outcome_recorded:contacted",
        "outcome_recorded:first_interview_held",
        "outcome_recorded:follow_up_accepted",
    ]


def test_viborg_sees_nothing_of_herning(centre):
    client, engine = centre
    herning_id = _issue(engine)
    searched = fhir(client.get(f"{HERNING}/Task?_include=Task:patient", headers=auth("tok-viborg")))
    assert searched["total"] == 0 and "entry" not in searched
    own = fhir(client.get("/fhir/viborg/Task", headers=auth("tok-viborg")))
    assert own["total"] == 0
    for kind in ("Task", "Patient", "ServiceRequest", "Consent"):
        foreign = fhir(client.get(f"{HERNING}/{kind}/{herning_id}", headers=auth("tok-viborg")), 404)
        missing = fhir(client.get(f"{HERNING}/{kind}/{uuid.uuid4()}", headers=auth("tok-viborg")), 404)
        assert foreign == missing
    fhir(_patch(client, herning_id, _set_status("contacted", "in-progress"), 1, token="tok-viborg"), 404)
    assert _state(engine, herning_id) == "new" and _outcome_events(engine) == []
    unauthenticated = client.get(f"{HERNING}/Task")
    assert fhir(unauthenticated, 401)["issue"][0]["code"] == "login"
    assert unauthenticated.headers["www-authenticate"] == "Bearer"
    assert fhir(client.get(f"{HERNING}/Task", headers=auth("tok-auditor")), 403)["issue"][0]["code"] == "forbidden"
    assert fhir(client.delete(f"{HERNING}/Task/{herning_id}", headers=auth("tok-herning")), 405)
    assert fhir(client.get(f"{HERNING}/Appointment/{herning_id}", headers=auth("tok-herning")), 404)
    # the JSON API keeps its own error body
    assert client.get("/v1/referrals").json() == {"detail": "A valid bearer token is required."}


def test_bad_updates_answer_an_operation_outcome_and_change_nothing(centre):
    client, engine = centre
    referral_id = _issue(engine)
    url = f"{HERNING}/Task/{referral_id}"
    patch_headers = {**auth("tok-herning"), "Content-Type": "application/json-patch+json", "If-Match": 'W/"1"'}
    task = fhir(client.get(url, headers=auth("tok-herning")))
    cases = [
        # (response, status, the element named)
        (_patch(client, referral_id, _set_status("bogus", "in-progress"), 1), 422, "Task.businessStatus"),
        (_patch(client, referral_id, [{"op": "replace", "path": "/status", "value": "bogus"}], 1), 422, "Task.status"),
        (_patch(client, referral_id, _set_status("contacted", "completed"), 1), 422, "Task.status"),
        (_patch(client, referral_id, _set_status("follow_up_accepted", "completed"), 1), 409, "Task.businessStatus"),
        (_patch(client, referral_id, _set_status("contacted", "in-progress"), 7), 412, "If-Match"),
        (
            _patch(
                client, referral_id, [{"op": "replace", "path": "/owner/reference", "value": "Organization/viborg"}], 1
            ),
            422,
            "Task.owner",
        ),
        (_patch(client, referral_id, [{"op": "remove", "path": "/nothing"}], 1), 422, "body"),
        (client.patch(url, content=b"{not json", headers=patch_headers), 400, "body"),
        (
            client.patch(url, content=b"[]", headers={**patch_headers, "Content-Type": "application/json"}),
            415,
            "Content-Type",
        ),
        (
            client.patch(
                url,
                content=json.dumps(_set_status("contacted", "in-progress")),
                headers={**auth("tok-herning"), "Content-Type": "application/json-patch+json"},
            ),
            428,
            "If-Match",
        ),
        (
            client.put(
                url,
                content=json.dumps({"resourceType": "Patient", "id": referral_id}),
                headers={**auth("tok-herning"), "Content-Type": "application/fhir+json", "If-Match": 'W/"1"'},
            ),
            400,
            "resourceType",
        ),
        (
            client.put(
                url,
                content=json.dumps(
                    {
                        **task,
                        "status": "in-progress",
                        "businessStatus": {"coding": [{"system": STATE, "code": "contacted"}]},
                        "bogus": 1,
                    }
                ),
                headers={**auth("tok-herning"), "Content-Type": "application/fhir+json", "If-Match": 'W/"1"'},
            ),
            422,
            "Task.bogus",
        ),
        (client.get(f"{HERNING}/Task?priority=urgent", headers=auth("tok-herning")), 400, "priority"),
        (client.get(f"{HERNING}/Task?status=open", headers=auth("tok-herning")), 400, "status"),
        (client.get(f"{HERNING}/Task?_format=xml", headers=auth("tok-herning")), 400, "_format"),
        (client.get(f"{HERNING}/Task?authored-on=yesterday", headers=auth("tok-herning")), 400, "authored-on"),
        (client.get(f"{HERNING}/Task?_include=Task:*", headers=auth("tok-herning")), 400, "_include"),
    ]
    for response, status, field in cases:
        outcome = fhir(response, status)
        assert outcome["resourceType"] == "OperationOutcome", response.text
        assert outcome["issue"][0]["expression"] == [field], response.text
    assert fhir(client.get(url, headers=auth("tok-herning"))) == task
    assert _state(engine, referral_id) == "new" and _outcome_events(engine) == []


def test_a_withdrawn_referral_is_a_cancelled_task_an_inactive_consent_and_no_patient(centre):
    client, engine = centre
    referral_id = _issue(engine)
    assert store_intake.ingest_withdrawn(engine, referral_withdrawn(uuid.UUID(referral_id))) == "erased"
    task = fhir(client.get(f"{HERNING}/Task/{referral_id}", headers=auth("tok-herning")))
    assert task["status"] == "cancelled" and task["meta"]["versionId"] == "2"
    assert fhir(client.get(f"{HERNING}/Consent/{referral_id}", headers=auth("tok-herning")))["status"] == "inactive"
    assert (
        fhir(client.get(f"{HERNING}/ServiceRequest/{referral_id}", headers=auth("tok-herning")))["status"] == "revoked"
    )
    gone = fhir(client.get(f"{HERNING}/Patient/{referral_id}", headers=auth("tok-herning")), 410)
    assert gone["issue"][0]["code"] == "deleted"
    bundle = fhir(client.get(f"{HERNING}/Task?_id={referral_id}&_include=Task:patient", headers=auth("tok-herning")))
    assert [e["resource"]["resourceType"] for e in bundle["entry"]] == ["Task"]
    refused = fhir(_patch(client, referral_id, _set_status("contacted", "in-progress"), 2), 409)
    assert "withdrawn consent" in refused["issue"][0]["diagnostics"]


# ---------------------------------------------------------------- the mapping, as the guides state it


def _mapping_table(guide: str, row: str) -> dict[str, str]:
    return dict(re.findall(row, (ROOT / "docs" / guide).read_text(encoding="utf-8"), re.MULTILINE))


def test_every_state_maps_to_a_task_status_and_both_guides_say_the_same():
    assert set(TASK_STATUS) == set(domain.TRANSITIONS)
    assert set(TASK_STATUS.values()) <= TASK_STATUSES
    # "| `contacted` | `in-progress` | may follow |" and "| Kontakt opnået | `contacted` | `in-progress` |"
    assert _mapping_table("integrating-case-systems.md", r"^\| `(\w+)`[^|]*\| `([a-z-]+)` \|") == TASK_STATUS
    assert _mapping_table("caseworker-guide.md", r"^\| [^|`]+ \| `(\w+)` \| `([a-z-]+)` \|$") == TASK_STATUS


def test_authored_on_filters_by_danish_day_or_instant():
    issued = datetime(2026, 3, 1, 23, 30, tzinfo=UTC)  # 2 March in Denmark
    assert date_filter("eq2026-03-02").matches(issued)
    assert date_filter("2026-03-02").matches(issued) and not date_filter("lt2026-03-02").matches(issued)
    assert date_filter("ge2026-03-01T23:00:00Z").matches(issued)
    assert not date_filter("gt2026-03-02T00:30:00+01:00").matches(issued)
    for bad in ("yesterday", "ge2026-03-01T10:00:00", "2026-13-01"):
        with pytest.raises(BadSearch):
            date_filter(bad)


def test_details_erased_by_retention_leave_the_task_as_it_closed(centre):
    client, engine = centre
    referral_id = _issue(engine)
    fhir(_patch(client, referral_id, _set_status("declined_by_person", "completed"), 1))
    assert store_intake.erase_for_retention(engine, referral_id, "herning", datetime.now(UTC))
    task = fhir(client.get(f"{HERNING}/Task/{referral_id}", headers=auth("tok-herning")))
    assert task["status"] == "completed" and task["businessStatus"]["coding"][0]["code"] == "declined_by_person"
    fhir(client.get(f"{HERNING}/Patient/{referral_id}", headers=auth("tok-herning")), 410)
    assert fhir(client.get(f"{HERNING}/Consent/{referral_id}", headers=auth("tok-herning")))["status"] == "active"


def test_the_version_is_checked_again_where_the_outcome_is_written(centre):
    """Two case systems that read version 1 and write at once: the second write, past the
    route's check, is refused in the transaction that would record it."""
    _, engine = centre
    referral_id = _issue(engine)
    record = partial(
        casework.record_and_count,
        engine,
        KEYS,
        centre="herning",
        referral_id=referral_id,
        actor="x",
        actor_kind="client",
    )
    record(outcome="contacted", expected_version=1)
    with pytest.raises(VersionConflict):
        record(outcome="first_interview_held", expected_version=1)
    assert record(outcome="contacted", expected_version=1).created is False  # a repeat: answered, not refused
    assert _state(engine, referral_id) == "contacted" and len(_outcome_events(engine)) == 1
