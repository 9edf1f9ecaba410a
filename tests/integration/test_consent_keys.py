"""The key store behind the consent API, on SQLite and PostgreSQL: a referral's data key goes to
the one centre (or the manual-handling role) it is routed to, and to nobody after a withdrawal.

A credential asking for a key that is not its own, a key that never existed and a destroyed
key all get the same answer, so a centre learns nothing about others' referrals.
"""

from __future__ import annotations

import base64
import uuid
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, update

from henvis.db import utcnow
from henvis.services.consent import store_keys
from henvis.services.consent.models import consent_outbox, data_keys
from tests import examples
from tests.consent_support import AUDITOR, HERNING, HOLSTEBRO, MANUAL, POLICE, consent_app


@pytest.fixture
def api(database_url: str):
    app = consent_app(database_url)
    with TestClient(app) as client:
        yield client
    app.state.engine.dispose()


def consent(api: TestClient, **fields) -> str:
    response = api.post("/v1/decisions", json=examples.consent_given(**fields), headers=POLICE)
    assert response.status_code == 202, response.text
    return response.json()["referral_id"]


def withdraw(api: TestClient, **fields) -> None:
    response = api.post("/v1/withdrawals", json=examples.consent_withdrawn(**fields), headers=POLICE)
    assert response.status_code == 202, response.text


def key(api: TestClient, referral_id: str, headers: dict):
    return api.get(f"/v1/data-keys/{referral_id}", headers=headers)


def released(api: TestClient, referral_id: str, headers: dict) -> bytes:
    response = key(api, referral_id, headers)
    assert response.status_code == 200, response.text
    assert response.json()["referral_id"] == referral_id
    return base64.b64decode(response.json()["data_key"])


def refused(response) -> tuple[int, dict]:
    return response.status_code, response.json()


NOBODYS = (404, {"detail": "No such data key."})


def test_a_referrals_key_goes_to_its_centre_and_nobody_else_gets_more_than_for_a_key_that_never_existed(api):
    referral_id = consent(api, case_ref="4100-KEY-1", municipality_code="657")  # Herning
    assert len(released(api, referral_id, HERNING)) == 32
    assert released(api, referral_id, HERNING) == released(api, referral_id, HERNING)  # the same key each time
    assert refused(key(api, referral_id, HOLSTEBRO)) == NOBODYS
    assert refused(key(api, referral_id, MANUAL)) == NOBODYS
    assert refused(key(api, str(uuid.uuid4()), HOLSTEBRO)) == NOBODYS
    assert key(api, referral_id, POLICE).status_code == 403
    assert key(api, referral_id, {}).status_code == 401


def test_a_case_in_manual_handling_gives_its_key_to_the_manual_handling_role_only(api):
    outside = consent(api, case_ref="4100-KEY-2", municipality_code="751")  # Aarhus: outside the district
    no_address = consent(api, case_ref="4100-KEY-3", municipality_code=None)
    for referral_id in (outside, no_address):
        assert len(released(api, referral_id, MANUAL)) == 32
        assert refused(key(api, referral_id, HERNING)) == NOBODYS


def test_a_preferred_centre_gets_the_key_not_the_residence_centre(api):
    referral_id = consent(api, case_ref="4100-KEY-4", municipality_code="657", preferred_centre="holstebro")
    assert len(released(api, referral_id, HOLSTEBRO)) == 32
    assert refused(key(api, referral_id, HERNING)) == NOBODYS


def test_a_withdrawal_destroys_the_key_at_once_and_the_published_consent_with_it(api):
    referral_id = consent(api, case_ref="4100-KEY-5", municipality_code="657")
    released(api, referral_id, HERNING)
    with api.app.state.engine.begin() as conn:  # the relay published the consent
        conn.execute(update(consent_outbox).values(sent_at=utcnow()))

    withdraw(api, case_ref="4100-KEY-5")

    assert refused(key(api, referral_id, HERNING)) == NOBODYS  # exactly as for a key that never existed
    with api.app.state.engine.connect() as conn:
        row = conn.execute(select(data_keys).where(data_keys.c.referral_id == referral_id)).one()
        outbox = conn.execute(select(consent_outbox.c.event_id)).scalars().all()
    assert (row.wrapped_key, row.kek_id, row.destroyed_reason) == (None, None, "withdrawal")
    assert len(outbox) == 1  # only the withdrawal's own row, still to be published
    actions = [entry["action"] for entry in api.get("/v1/key-access-log", headers=AUDITOR).json()["entries"]]
    assert actions == ["key_released", "key_destroyed_withdrawal", "key_refused"]


def test_a_withdrawal_by_referral_id_destroys_that_referrals_key_only(api):
    first = consent(api, case_ref="4100-KEY-6", municipality_code="657")
    second = consent(api, case_ref="4100-KEY-6", municipality_code="657")
    withdraw(api, case_ref=None, referral_id=first)
    assert refused(key(api, first, HERNING)) == NOBODYS
    assert len(released(api, second, HERNING)) == 32


def test_a_consent_that_comes_after_its_withdrawal_is_born_with_its_key_destroyed(api):
    withdraw(api, case_ref="4100-KEY-7")
    referral_id = consent(api, case_ref="4100-KEY-7", municipality_code="657")
    assert refused(key(api, referral_id, HERNING)) == NOBODYS
    later = consent(api, case_ref="4100-KEY-7", municipality_code="657")  # the withdrawal held for one only
    assert len(released(api, later, HERNING)) == 32


def test_a_centre_returning_a_referral_hands_its_key_to_manual_handling(api):
    referral_id = consent(api, case_ref="4100-KEY-8", municipality_code="657")
    assert api.post(f"/v1/data-keys/{referral_id}/return", headers=HOLSTEBRO).status_code == 404
    assert api.post(f"/v1/data-keys/{referral_id}/return", headers=HERNING).status_code == 204
    assert api.post(f"/v1/data-keys/{referral_id}/return", headers=HERNING).status_code == 204  # a retry
    assert refused(key(api, referral_id, HERNING)) == NOBODYS
    assert len(released(api, referral_id, MANUAL)) == 32
    assert api.post(f"/v1/data-keys/{referral_id}/return", headers=MANUAL).status_code == 403


def test_only_the_holder_destroys_a_key_and_another_centre_learns_nothing(api):
    referral_id = consent(api, case_ref="4100-KEY-9", municipality_code="657")
    assert api.delete(f"/v1/data-keys/{referral_id}", headers=HOLSTEBRO).status_code == 404
    assert len(released(api, referral_id, HERNING)) == 32
    assert api.delete(f"/v1/data-keys/{referral_id}", headers=HERNING).status_code == 204
    assert refused(key(api, referral_id, HERNING)) == NOBODYS
    assert api.delete(f"/v1/data-keys/{referral_id}", headers=HERNING).status_code == 404


def test_the_backstop_destroys_keys_nobody_destroyed_after_their_maximum_age(api):
    referral_id = consent(api, case_ref="4100-KEY-10", municipality_code="751")
    engine = api.app.state.engine
    assert store_keys.destroy_expired(engine, 365, now=utcnow() + timedelta(days=364)) == 0
    assert store_keys.destroy_expired(engine, 365, now=utcnow() + timedelta(days=366)) == 1
    assert refused(key(api, referral_id, MANUAL)) == NOBODYS
    assert store_keys.status(engine)["destroyed_by_reason"] == {"retention": 1}


def test_a_key_under_a_kek_this_replica_lacks_is_unavailable_never_erased(api):
    referral_id = consent(api, case_ref="4100-KEY-11", municipality_code="657")
    with api.app.state.engine.begin() as conn:
        conn.execute(update(data_keys).values(kek_id="a-newer-kek"))
    response = key(api, referral_id, HERNING)
    assert response.status_code == 503 and response.headers["Retry-After"]


def test_the_key_access_log_is_for_auditors_and_filters_by_referral(api):
    referral_id = consent(api, case_ref="4100-KEY-12", municipality_code="657")
    released(api, referral_id, HERNING)
    key(api, referral_id, HOLSTEBRO)
    assert api.get("/v1/key-access-log", headers=HERNING).status_code == 403
    entries = api.get("/v1/key-access-log", params={"referral_id": referral_id}, headers=AUDITOR).json()["entries"]
    assert [(entry["actor"], entry["role"], entry["action"]) for entry in entries] == [
        ("herning-inbox", "centre:herning", "key_released"),
        ("holstebro-inbox", "centre:holstebro", "key_refused"),
    ]
