"""The centre API as a centre's case system and an auditor use it (SQLite and PostgreSQL)."""

from __future__ import annotations

import base64
import csv
import io
import json
import uuid
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from structlog.testing import capture_logs

from henvis.schemas.events import PersonalData
from henvis.services.centre import retention, store_intake
from henvis.services.centre.api import build_app
from henvis.services.centre.models import outbox, referrals
from henvis.shredding import open_personal_data
from tests.centre_fakes import KEYS, auth, centre_settings, personal_strings, referral_issued, referral_withdrawn


@pytest.fixture
def centre(database_url):
    app = build_app(centre_settings(database_url), keys=KEYS)
    engine = app.state.centre.engine
    with TestClient(app, base_url="http://localhost") as client:
        yield client, engine
    engine.dispose()


def _issue(engine, centre="herning", **kwargs):
    event = referral_issued(centre, **kwargs)
    assert store_intake.ingest_issued(engine, event, centre) == "stored"
    return str(event.referral_id)


def _post(client, referral_id, token="tok-herning", **body):
    return client.post(f"/v1/referrals/{referral_id}/outcomes", json=body, headers=auth(token))


def _outbox(engine, topic_base):
    with engine.connect() as conn:
        return [
            json.loads(r.payload)
            for r in conn.execute(
                sa.select(outbox.c.payload).where(outbox.c.topic_base == topic_base).order_by(outbox.c.id)
            )
        ]


def test_credentials_and_roles(centre):
    client, engine = centre
    referral_id = _issue(engine)
    assert client.get("/v1/referrals").status_code == 401
    assert client.get("/v1/referrals", headers=auth("not-a-token")).status_code == 401
    assert client.get("/v1/referrals", headers=auth("tok-auditor")).status_code == 403
    assert client.get("/v1/referrals", headers=auth("tok-police")).status_code == 403
    assert _post(client, referral_id, "tok-police", outcome="contacted").status_code == 403
    assert client.get("/v1/access-log", headers=auth("tok-herning")).status_code == 403
    assert client.get("/v1/access-log", headers=auth("tok-auditor")).status_code == 200
    assert client.get("/readyz").status_code == 200


def test_a_centre_sees_only_its_own_referrals_and_others_look_missing(centre):
    client, engine = centre
    herning_id = _issue(engine, "herning")
    holstebro_id = _issue(engine, "holstebro", person_index=1)

    listed = client.get("/v1/referrals", headers=auth("tok-holstebro")).json()["referrals"]
    assert [r["referral_id"] for r in listed] == [holstebro_id]

    foreign = client.get(f"/v1/referrals/{herning_id}", headers=auth("tok-holstebro"))
    missing = client.get(f"/v1/referrals/{uuid.uuid4()}", headers=auth("tok-holstebro"))
    assert foreign.status_code == missing.status_code == 404
    assert foreign.json() == missing.json()
    assert _post(client, herning_id, "tok-holstebro", outcome="contacted").status_code == 404
    with engine.connect() as conn:
        assert (
            conn.execute(sa.select(referrals.c.state).where(referrals.c.referral_id == herning_id)).scalar_one()
            == "new"
        )


def test_list_is_sorted_by_deadline_without_contact_details(centre):
    client, engine = centre
    today = datetime.now(UTC).date()
    later = _issue(engine, contact_due_by=today + timedelta(days=3))
    overdue = _issue(
        engine,
        person_index=1,
        issued_at=datetime.now(UTC) - timedelta(days=5),
        contact_due_by=today - timedelta(days=2),
    )
    soon = _issue(engine, person_index=2, contact_due_by=today + timedelta(days=1))

    body = client.get("/v1/referrals?status=open", headers=auth("tok-herning")).json()
    assert [r["referral_id"] for r in body["referrals"]] == [overdue, soon, later]
    first = body["referrals"][0]
    assert set(first) == {
        "referral_id",
        "centre",
        "status",
        "offence",
        "contact_due_by",
        "treatment_due_by",
        "issued_at",
        "last_outcome",
        "next_outcomes",
    }
    assert first["status"] == "overdue" and first["last_outcome"] is None
    assert "contacted" in first["next_outcomes"]
    text = json.dumps(body)
    assert not any(value in text for value in personal_strings())
    only_overdue = client.get("/v1/referrals?status=overdue", headers=auth("tok-herning")).json()["referrals"]
    assert [r["referral_id"] for r in only_overdue] == [overdue]

    bad = client.get("/v1/referrals?status=everything", headers=auth("tok-herning"))
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "query.status"


def test_caseworker_path_to_closed_and_outcomes_in_the_outbox(centre):
    client, engine = centre
    referral_id = _issue(engine)
    for outcome in ("contact_attempted", "contacted", "first_interview_held", "follow_up_accepted"):
        answer = _post(client, referral_id, outcome=outcome)
        assert answer.status_code == 201, answer.text
        assert answer.json()["outcome"] == outcome
    assert answer.json()["status"] == "closed"

    detail = client.get(f"/v1/referrals/{referral_id}", headers=auth("tok-herning")).json()
    assert detail["person"]["full_name"] == "Mette Kjær Sørensen"
    assert [o["outcome"] for o in detail["outcomes"]] == [
        "contact_attempted",
        "contacted",
        "first_interview_held",
        "follow_up_accepted",
    ]
    assert detail["next_outcomes"] == []
    assert (
        client.get("/v1/referrals?status=closed", headers=auth("tok-herning")).json()["referrals"][0]["referral_id"]
        == referral_id
    )
    assert client.get("/v1/referrals?status=open", headers=auth("tok-herning")).json()["referrals"] == []

    published = _outbox(engine, "referral.outcomes.v1")
    assert [p["outcome"] for p in published] == [
        "contact_attempted",
        "contacted",
        "first_interview_held",
        "follow_up_accepted",
    ]
    assert all(p["referral_id"] == referral_id and p["centre"] == "herning" for p in published)


def test_illegal_transition_is_409_with_a_sentence(centre):
    client, engine = centre
    referral_id = _issue(engine)
    refused = _post(client, referral_id, outcome="follow_up_accepted")
    assert refused.status_code == 409
    assert "first interview" in refused.json()["detail"]
    assert _post(client, referral_id, outcome="declined_by_person").status_code == 201
    after_decline = _post(client, referral_id, outcome="contacted")
    assert after_decline.status_code == 409 and "closed" in after_decline.json()["detail"]
    assert _post(client, referral_id, outcome="withdrawal_acknowledged").status_code == 409


def test_recording_the_same_outcome_twice_is_idempotent(centre):
    client, engine = centre
    referral_id = _issue(engine)
    event_id = str(uuid.uuid4())
    first = _post(client, referral_id, outcome="contacted", event_id=event_id)
    again = _post(client, referral_id, outcome="contacted", event_id=event_id)
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json() == first.json()
    double_click = _post(client, referral_id, outcome="contacted")
    assert double_click.status_code == 200 and double_click.json()["event_id"] == event_id
    reused = _post(client, referral_id, outcome="first_interview_held", event_id=event_id)
    assert reused.status_code == 409 and reused.json()["errors"][0]["field"] == "event_id"
    assert len(_outbox(engine, "referral.outcomes.v1")) == 1


def test_bad_input_is_4xx_naming_the_field_never_echoing_it(centre):
    client, engine = centre
    referral_id = _issue(engine)
    unknown = _post(client, referral_id, outcome="Mette Kjær Sørensen")
    assert unknown.status_code == 422 and unknown.json()["errors"][0]["field"] == "outcome"
    assert "Mette" not in unknown.text
    future = _post(
        client, referral_id, outcome="contacted", occurred_at=(datetime.now(UTC) + timedelta(days=1)).isoformat()
    )
    assert future.status_code == 422 and future.json()["errors"][0]["field"] == "occurred_at"
    naive = _post(client, referral_id, outcome="contacted", occurred_at="2026-11-20T10:00:00")
    assert naive.status_code == 422 and naive.json()["errors"][0]["field"] == "occurred_at"
    extra = _post(client, referral_id, outcome="contacted", note="ringede kl 10")
    assert extra.status_code == 422 and extra.json()["errors"][0]["field"] == "note"
    not_json = client.post(
        f"/v1/referrals/{referral_id}/outcomes",
        content="outcome=contacted",
        headers={**auth("tok-herning"), "Content-Type": "application/x-www-form-urlencoded"},
    )
    assert not_json.status_code == 415
    huge = client.post(
        f"/v1/referrals/{referral_id}/outcomes",
        content=b"{" + b" " * 70_000 + b"}",
        headers={**auth("tok-herning"), "Content-Type": "application/json"},
    )
    assert huge.status_code == 413
    bad_id = client.get("/v1/referrals/not-a-uuid", headers=auth("tok-herning"))
    assert bad_id.status_code == 422 and bad_id.json()["errors"][0]["field"] == "path.referral_id"


def test_historical_outcomes_from_the_pilot_are_accepted_back_to_the_charge_date(centre):
    client, engine = centre
    referral_id = _issue(engine, charged_on=datetime(2020, 4, 2).date())
    ok = _post(client, referral_id, outcome="contacted", occurred_at="2020-04-03T10:00:00+02:00")
    assert ok.status_code == 201
    early = _post(client, referral_id, outcome="first_interview_held", occurred_at="2020-03-30T10:00:00+02:00")
    assert early.status_code == 422 and "charge date" in early.json()["detail"]


def test_withdrawal_erases_contact_details_from_the_database_row(centre):
    client, engine = centre
    referral_id = _issue(engine)
    assert _post(client, referral_id, outcome="contacted").status_code == 201

    assert store_intake.ingest_withdrawn(engine, referral_withdrawn(uuid.UUID(referral_id))) == "erased"
    assert store_intake.ingest_withdrawn(engine, referral_withdrawn(uuid.UUID(referral_id))) == "duplicate"

    with engine.connect() as conn:
        row = conn.execute(sa.select(referrals).where(referrals.c.referral_id == referral_id)).one()
    assert row.state == "withdrawn" and row.contact_erased_at is not None
    for column in (
        "case_ref",
        "person_full_name",
        "person_phone",
        "person_email",
        "person_street",
        "person_postcode",
        "person_city",
        "person_cpr",
    ):
        assert getattr(row, column) is None, column
    detail = client.get(f"/v1/referrals/{referral_id}", headers=auth("tok-herning")).json()
    assert detail["person"] is None and detail["status"] == "withdrawn"
    assert _post(client, referral_id, outcome="first_interview_held").status_code == 409
    acks = [p for p in _outbox(engine, "referral.outcomes.v1") if p["outcome"] == "withdrawal_acknowledged"]
    assert len(acks) == 1 and acks[0]["referral_id"] == referral_id


def test_a_withdrawal_that_overtakes_its_referral_keeps_the_referral_erased(centre):
    client, engine = centre
    late = referral_issued("herning")
    assert store_intake.ingest_withdrawn(engine, referral_withdrawn(late.referral_id)) == "tombstone"
    assert store_intake.ingest_issued(engine, late, "herning") == "stored_withdrawn"
    with engine.connect() as conn:
        row = conn.execute(sa.select(referrals).where(referrals.c.referral_id == str(late.referral_id))).one()
    assert row.state == "withdrawn" and row.person_full_name is None and row.person_phone is None
    listed = client.get("/v1/referrals?status=withdrawn", headers=auth("tok-herning")).json()["referrals"]
    assert [r["referral_id"] for r in listed] == [str(late.referral_id)]


def test_the_same_referral_delivered_twice_is_in_the_inbox_once(centre):
    client, engine = centre
    event = referral_issued("herning")
    assert store_intake.ingest_issued(engine, event, "herning") == "stored"
    assert store_intake.ingest_issued(engine, event, "herning") == "duplicate"
    assert len(client.get("/v1/referrals", headers=auth("tok-herning")).json()["referrals"]) == 1


def test_a_referral_on_the_wrong_topic_goes_to_manual_handling_without_personal_data(centre):
    client, engine = centre
    event = referral_issued("holstebro", person_index=3)
    assert store_intake.ingest_issued(engine, event, "herning") == "misrouted"
    assert client.get("/v1/referrals", headers=auth("tok-herning")).json()["referrals"] == []
    notices = _outbox(engine, "henvis.manual.v2")
    assert len(notices) == 1 and notices[0]["reason"] == "invalid_event"
    assert not any(value in json.dumps(notices) for value in personal_strings())


def test_returned_wrong_centre_sends_the_referral_to_manual_handling(centre):
    client, engine = centre
    referral_id = _issue(engine)
    assert _post(client, referral_id, outcome="returned_wrong_centre").json()["status"] == "closed"
    notices = _outbox(engine, "henvis.manual.v2")
    assert [(n["reason"], n["referral_id"]) for n in notices] == [("returned_wrong_centre", referral_id)]
    assert not any(value in json.dumps(notices) for value in personal_strings())


def test_every_view_and_outcome_is_in_the_access_log_without_contact_details(centre):
    client, engine = centre
    referral_id = _issue(engine)
    client.get(f"/v1/referrals/{referral_id}", headers=auth("tok-herning"))
    _post(client, referral_id, outcome="contacted")
    client.get(f"/v1/referrals/{referral_id}", headers=auth("tok-herning"))

    entries = client.get(f"/v1/access-log?referral_id={referral_id}", headers=auth("tok-auditor")).json()["entries"]
    assert [(e["actor"], e["action"]) for e in entries] == [
        ("herning-case-system", "view_contact_details"),
        ("herning-case-system", "outcome_recorded:contacted"),
        ("herning-case-system", "view_contact_details"),
    ]
    exported = client.get("/v1/access-log?format=csv", headers=auth("tok-auditor"))
    assert exported.status_code == 200 and exported.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(exported.text)))
    assert len(rows) == 3 and rows[0]["referral_id"] == referral_id
    assert not any(value in exported.text for value in personal_strings())


def test_purge_erases_contact_details_after_the_retention_period(centre):
    client, engine = centre
    old_closed = _issue(engine)
    recent_closed = _issue(engine, person_index=1)
    still_open = _issue(engine, person_index=2)
    _post(client, old_closed, outcome="declined_by_person")
    _post(client, recent_closed, outcome="declined_by_person")
    with engine.begin() as conn:
        conn.execute(
            referrals.update()
            .where(referrals.c.referral_id == old_closed)
            .values(ended_at=datetime.now(UTC) - timedelta(days=91))
        )

    assert retention.purge(engine, KEYS, retention_days=90) == 1
    with engine.connect() as conn:
        names = dict(conn.execute(sa.select(referrals.c.referral_id, referrals.c.personal_sealed)).all())
    assert names[old_closed] is None
    assert names[recent_closed] is not None and names[still_open] is not None
    assert KEYS.fetch("herning", old_closed) is None  # its data key destroyed with it
    assert KEYS.fetch("herning", recent_closed) is not None
    assert retention.purge(engine, KEYS, retention_days=90) == 0


def test_metrics_count_open_overdue_and_outcomes(centre):
    client, engine = centre
    _issue(engine)
    _issue(
        engine,
        person_index=1,
        issued_at=datetime.now(UTC) - timedelta(days=4),
        contact_due_by=datetime.now(UTC).date() - timedelta(days=2),
    )
    closed = _issue(engine, person_index=2)
    _post(client, closed, outcome="unreachable")
    text = client.get("/metrics").text
    assert 'henvis_centre_open_referrals{centre="herning"} 2.0' in text
    assert 'henvis_centre_overdue_referrals{centre="herning"} 1.0' in text
    assert 'henvis_centre_open_referrals{centre="holstebro"} 0.0' in text
    assert 'henvis_centre_outcomes_total{centre="herning",outcome="unreachable"}' in text
    assert not any(value in text for value in personal_strings())


def test_a_returned_referral_hands_its_key_to_the_manual_desk_and_its_details_travel_sealed(centre):
    client, engine = centre
    referral_id = _issue(engine)
    assert client.get(f"/v1/referrals/{referral_id}", headers=auth("tok-herning")).json()["person"]["full_name"]
    assert _post(client, referral_id, outcome="returned_wrong_centre").status_code == 201

    (notice,) = _outbox(engine, "henvis.manual.v2")
    assert not any(value in json.dumps(notice) for value in personal_strings())
    grantee, data_key = KEYS.keys[referral_id]
    assert grantee == "manual-handling"  # the centre no longer gets it
    opened = PersonalData.model_validate_json(open_personal_data(data_key, uuid.UUID(referral_id), notice["personal"]))
    assert opened.person.full_name == "Mette Kjær Sørensen" and opened.case_ref == "4100-80261-00123-21"
    shown = client.get(f"/v1/referrals/{referral_id}", headers=auth("tok-herning")).json()
    assert shown["person"] is None  # shown as erased, never an error


def test_a_returned_referral_re_routed_to_another_centre_starts_afresh_there(centre):
    client, engine = centre
    first = referral_issued("herning")
    store_intake.ingest_issued(engine, first, "herning")
    referral_id = str(first.referral_id)
    assert _post(client, referral_id, outcome="returned_wrong_centre").status_code == 201

    again = first.model_copy(update={"event_id": uuid.uuid4(), "centre": "holstebro", "municipality_code": "661"})
    # The manual desk re-routes it and has the key store grant its key to the new centre.
    KEYS.keys[referral_id] = ("centre:holstebro", KEYS.keys[referral_id][1])
    assert store_intake.ingest_issued(engine, again, "holstebro") == "rerouted"
    assert store_intake.ingest_issued(engine, again, "holstebro") == "duplicate"

    assert client.get(f"/v1/referrals/{referral_id}", headers=auth("tok-herning")).status_code == 404
    moved = client.get(f"/v1/referrals/{referral_id}", headers=auth("tok-holstebro")).json()
    assert moved["status"] == "open" and moved["last_outcome"] is None and moved["person"]["full_name"]
    assert _post(client, referral_id, "tok-holstebro", outcome="contacted").status_code == 201


def _tampered(sealed: str) -> str:
    raw = bytearray(base64.b64decode(sealed))
    raw[-1] ^= 0x01  # one bit of the authentication tag
    return base64.b64encode(bytes(raw)).decode()


def _truncated(sealed: str) -> str:
    return base64.b64encode(base64.b64decode(sealed)[:-8]).decode()


@pytest.mark.parametrize("damage", ["tampered", "wrong_key", "truncated"])
def test_contact_details_that_do_not_open_go_to_manual_handling_with_a_reason(centre, damage):
    client, engine = centre
    event = referral_issued("herning", person_index=2)
    other = referral_issued("herning", person_index=3)  # its blob is sealed under another key
    personal = {
        "tampered": _tampered(event.personal),
        "wrong_key": other.personal,
        "truncated": _truncated(event.personal),
    }[damage]
    damaged = event.model_copy(update={"personal": personal})
    assert store_intake.ingest_issued(engine, damaged, "herning") == "stored"
    referral_id = str(event.referral_id)

    with capture_logs() as logs:
        shown = client.get(f"/v1/referrals/{referral_id}", headers=auth("tok-herning"))
        again = client.get(f"/v1/referrals/{referral_id}", headers=auth("tok-herning"))

    assert (shown.status_code, again.status_code) == (200, 200)
    assert shown.json()["person"] is None and again.json()["person"] is None
    (case,) = _outbox(engine, "henvis.manual.v2")  # one case, however often it is looked at
    assert (case["reason"], case["referral_id"]) == ("undecryptable", referral_id)
    assert KEYS.keys[referral_id][0] == "manual-handling"  # the desk gets the key with the case
    told = json.dumps(case) + repr(logs)
    assert personal not in told and not any(value in told for value in personal_strings())
    assert [entry["event"] for entry in logs if entry["event"] == "contact_details_undecryptable"] == [
        "contact_details_undecryptable"
    ]
