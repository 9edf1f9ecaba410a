"""The centre's retention purge against the real key store (the consent API, served over HTTP):
a purged referral's data key is destroyed before its inbox copy is erased, and a key store that
does not answer leaves the copy for a later round, never erased while its key may live.
"""

from __future__ import annotations

import base64
import uuid

import httpx
import pytest
import sqlalchemy as sa
from structlog.testing import capture_logs

from henvis.db import migrate
from henvis.schemas.events import PersonalData
from henvis.services.centre import database, retention, store_intake, store_outcomes
from henvis.services.centre.key_store import KeyStoreClient
from henvis.services.centre.models import access_log, referrals
from henvis.shredding import seal_personal_data
from tests import examples
from tests.centre_fakes import InMemoryKeys, personal_strings, referral_issued
from tests.consent_support import AUDITOR, HERNING, HERNING_TOKEN, POLICE, consent_app
from tests.helpers import free_port, served


@pytest.fixture
def consent(database_url: str):
    """The consent API (with its key store) on the test database, and a port to serve it on."""
    app = consent_app(database_url)
    yield app, free_port()
    app.state.engine.dispose()


@pytest.fixture
def inbox(tmp_path):
    url = f"sqlite:///{tmp_path / 'centre.db'}"
    migrate(url, "centre")
    engine = database.make_centre_engine(url)
    yield engine
    engine.dispose()


def _consented_and_closed(key_store: str, inbox) -> str:
    """A consent routed to Herning (its key made by the real key store), in Herning's inbox sealed
    under that key, and closed by the centre: due for the purge at retention 0. Its referral id."""
    decision = examples.consent_given(case_ref="4100-RET-1", municipality_code="657")
    answer = httpx.post(f"{key_store}/v1/decisions", json=decision, headers=POLICE)
    assert answer.status_code == 202, answer.text
    referral_id = answer.json()["referral_id"]
    data_key = _key(key_store, referral_id)
    assert data_key.status_code == 200
    key = base64.b64decode(data_key.json()["data_key"])
    event = referral_issued("herning", keys=InMemoryKeys())
    personal = PersonalData.model_validate({"case_ref": "4100-RET-1", "person": examples.person()})
    event = event.model_copy(
        update={
            "referral_id": uuid.UUID(referral_id),
            "consent_event_id": uuid.UUID(decision["event_id"]),
            "personal": seal_personal_data(key, uuid.UUID(referral_id), personal.model_dump_json().encode()),
        }
    )
    assert store_intake.ingest_issued(inbox, event, "herning") == "stored"
    store_outcomes.record_outcome(
        inbox,
        centre="herning",
        referral_id=referral_id,
        outcome="declined_by_person",
        actor="anne.herning",
        actor_kind="user",
    )
    return referral_id


def _key(key_store: str, referral_id: str) -> httpx.Response:
    return httpx.get(f"{key_store}/v1/data-keys/{referral_id}", headers=HERNING)


def _row(inbox, referral_id: str):
    with inbox.connect() as conn:
        return conn.execute(sa.select(referrals).where(referrals.c.referral_id == referral_id)).one()


def _retention_audits(inbox, referral_id: str) -> int:
    with inbox.connect() as conn:
        return len(
            conn.execute(
                sa.select(access_log.c.id).where(
                    access_log.c.referral_id == referral_id,
                    access_log.c.action == "contact_details_erased_retention",
                )
            ).all()
        )


def test_a_referral_purged_by_retention_leaves_no_key_in_the_key_store(consent, inbox):
    app, port = consent
    with served(app, port) as key_store:
        referral_id = _consented_and_closed(key_store, inbox)
        keys = KeyStoreClient(key_store, {"herning": HERNING_TOKEN})

        assert retention.purge(inbox, keys, retention_days=1) == 0  # not due yet: key and copy stay
        assert _key(key_store, referral_id).status_code == 200

        assert retention.purge(inbox, keys, retention_days=0) == 1
        assert _key(key_store, referral_id).status_code == 404
        row = _row(inbox, referral_id)
        assert row.personal_sealed is None and row.contact_erased_at is not None
        assert _retention_audits(inbox, referral_id) == 1
        log = httpx.get(f"{key_store}/v1/key-access-log", params={"referral_id": referral_id}, headers=AUDITOR)
        assert ("herning-inbox", "key_destroyed_retention") in [
            (e["actor"], e["action"]) for e in log.json()["entries"]
        ]

        assert retention.purge(inbox, keys, retention_days=0) == 0  # done once
        keys.close()


def test_an_unreachable_key_store_leaves_the_copy_for_a_later_purge(consent, inbox):
    app, port = consent
    with served(app, port) as key_store:
        referral_id = _consented_and_closed(key_store, inbox)
    keys = KeyStoreClient(key_store, {"herning": HERNING_TOKEN}, timeout=2.0)

    with capture_logs() as logs:
        assert retention.purge(inbox, keys, retention_days=0) == 0  # the key store is down
    assert _row(inbox, referral_id).personal_sealed is not None
    assert _retention_audits(inbox, referral_id) == 0
    deferred = [entry for entry in logs if entry["event"] == "retention_purge_deferred"]
    assert deferred == [
        {"event": "retention_purge_deferred", "log_level": "warning", "referral_id": referral_id, "centre": "herning"}
    ]
    assert not any(value in repr(logs) for value in personal_strings())

    with served(app, port):  # back, at the same address
        assert _key(key_store, referral_id).status_code == 200  # the key lived on meanwhile
        assert retention.purge(inbox, keys, retention_days=0) == 1
        assert _key(key_store, referral_id).status_code == 404
    assert _row(inbox, referral_id).personal_sealed is None
    assert _retention_audits(inbox, referral_id) == 1
    keys.close()
