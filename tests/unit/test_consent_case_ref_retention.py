"""The consent service erases the case pseudonyms it keeps after ``case_ref_retention_days``.

It keeps the case's pseudonym (the keyed HMAC of ``case_ref``; never the case number itself)
in ``consent_events`` only so a withdrawal naming just a referral_id can be published keyed by
its case. Past the retention that row loses it, and such a withdrawal gets a clear 422 on
``referral_id``; by case_ref it still works.
"""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
import structlog
from fastapi.testclient import TestClient
from pydantic import ValidationError
from sqlalchemy import select

from henvis.schemas.events import ConsentWithdrawn, parse_decision
from henvis.services.consent import domain, store
from henvis.services.consent.models import consent_events
from henvis.services.consent.relay import Relay
from henvis.services.consent.settings import ConsentSettings
from tests import examples
from tests.consent_support import POLICE, SECRET_CASE, consent_app, migrated_engine, protection

RETENTION = timedelta(days=365)


@pytest.fixture
def engine(database_url: str):
    engine = migrated_engine(database_url)
    yield engine
    engine.dispose()


def _accept_given(engine, case_ref: str, age: timedelta) -> str:
    event = parse_decision(examples.consent_given(case_ref=case_ref))
    store.accept(engine, event, "politi-test", protection(), now=store.utcnow() - age)
    return str(event.event_id)


def _case_refs(engine) -> dict[str, str | None]:
    """The case number each row is known by (through its pseudonym), None when forgotten."""
    with engine.connect() as conn:
        rows = conn.execute(
            select(consent_events.c.event_id, consent_events.c.case_ref, consent_events.c.case_pseudonym)
        ).all()
    assert all(row.case_ref is None for row in rows)  # the number itself is never stored
    return {row.event_id: _CASES.get(row.case_pseudonym) if row.case_pseudonym else None for row in rows}


_CASES = {
    protection().pseudonyms(case_ref): case_ref
    for case_ref in [SECRET_CASE, "4100-1", *(f"4100-{age}-{n}" for age in ("old", "new") for n in range(3))]
}


# ---------------------------------------------------------------------------- store


def test_old_rows_lose_their_case_ref_and_fresh_rows_keep_it(engine) -> None:
    old = [_accept_given(engine, f"4100-old-{n}", age=timedelta(days=400)) for n in range(3)]
    fresh = [_accept_given(engine, f"4100-new-{n}", age=timedelta(days=10)) for n in range(2)]

    assert store.forget_case_refs(engine, RETENTION) == 3

    case_refs = _case_refs(engine)
    assert [case_refs[event_id] for event_id in old] == [None, None, None]
    assert [case_refs[event_id] for event_id in fresh] == ["4100-new-0", "4100-new-1"]
    assert store.forget_case_refs(engine, RETENTION) == 0  # only rows that still have one count


def test_the_cutoff_is_measured_from_now(engine) -> None:
    event_id = _accept_given(engine, "4100-1", age=timedelta(0))
    assert store.forget_case_refs(engine, RETENTION, now=store.utcnow() + timedelta(days=364)) == 0
    assert store.forget_case_refs(engine, RETENTION, now=store.utcnow() + timedelta(days=366)) == 1
    assert _case_refs(engine)[event_id] is None


def test_a_forgotten_referral_is_known_but_without_its_case(engine) -> None:
    event = parse_decision(examples.consent_given(case_ref="4100-1"))
    store.accept(engine, event, "politi-test", protection(), now=store.utcnow() - timedelta(days=400))
    referral_id = domain.referral_id_of(event)
    pseudonyms = protection().pseudonyms
    assert store.known_referral(engine, referral_id, pseudonyms) == domain.KnownReferral(pseudonyms("4100-1"))
    store.forget_case_refs(engine, RETENTION)
    assert store.known_referral(engine, referral_id, pseudonyms) == domain.KnownReferral(None)
    assert store.known_referral(engine, uuid.uuid4(), pseudonyms) is None


# ---------------------------------------------------------------------------- relay


def test_the_relay_forgets_case_refs_in_its_housekeeping_and_logs_only_the_count(engine, database_url) -> None:
    _accept_given(engine, SECRET_CASE, age=timedelta(days=400))
    _accept_given(engine, "4100-new-0", age=timedelta(days=1))
    relay = Relay(ConsentSettings(database_url=database_url), engine=engine)

    with structlog.testing.capture_logs() as logs:
        relay._housekeeping()
        relay._last_prune = 0.0
        relay._housekeeping()  # nothing left to forget: no second log line

    forgotten = [entry for entry in logs if entry["event"] == "case_refs_forgotten"]
    assert [entry["rows"] for entry in forgotten] == [1]
    assert SECRET_CASE not in repr(logs)
    assert sorted(case_ref or "" for case_ref in _case_refs(engine).values()) == ["", "4100-new-0"]


# ---------------------------------------------------------------------------- API


def test_withdrawal_by_a_forgotten_referral_id_is_refused_on_referral_id_and_by_case_ref_accepted(
    database_url: str,
) -> None:
    client = TestClient(consent_app(database_url), headers=POLICE)
    given = client.post("/v1/decisions", json=examples.consent_given(case_ref=SECRET_CASE))
    assert given.status_code == 202
    referral_id = given.json()["referral_id"]
    engine = migrated_engine(database_url)
    try:
        assert store.forget_case_refs(engine, RETENTION, now=store.utcnow() + timedelta(days=366)) == 1
    finally:
        engine.dispose()

    for body in (
        examples.consent_withdrawn(case_ref=None, referral_id=referral_id),
        examples.consent_withdrawn(case_ref=SECRET_CASE, referral_id=referral_id),
    ):
        body = {key: value for key, value in body.items() if value is not None}
        refused = client.post("/v1/withdrawals", json=body)
        assert refused.status_code == 422
        assert [(e["field"], e["type"]) for e in refused.json()["errors"]] == [("referral_id", "referral_expired")]
        assert "withdraw by case_ref" in refused.json()["errors"][0]["message"]
        assert SECRET_CASE not in refused.text and referral_id not in refused.text

    by_case = client.post("/v1/withdrawals", json=examples.consent_withdrawn(case_ref=SECRET_CASE))
    assert by_case.status_code == 202


def test_withdrawal_by_a_fresh_referral_id_still_works(database_url: str) -> None:
    client = TestClient(consent_app(database_url), headers=POLICE)
    referral_id = client.post("/v1/decisions", json=examples.consent_given()).json()["referral_id"]
    engine = migrated_engine(database_url)
    try:
        assert store.forget_case_refs(engine, RETENTION) == 0
    finally:
        engine.dispose()
    body = {k: v for k, v in examples.consent_withdrawn(referral_id=referral_id).items() if k != "case_ref"}
    assert client.post("/v1/withdrawals", json=body).status_code == 202


# ---------------------------------------------------------------------------- domain and settings


def test_a_referral_without_its_case_cannot_be_resolved() -> None:
    withdrawal = ConsentWithdrawn.model_validate(
        {k: v for k, v in examples.consent_withdrawn(referral_id=str(uuid.uuid4())).items() if k != "case_ref"}
    )
    published, errors = domain.resolve_withdrawal(withdrawal, domain.KnownReferral(None), protection().pseudonyms)
    assert published is None
    assert [(e["field"], e["type"]) for e in errors] == [("referral_id", "referral_expired")]


def test_case_ref_retention_comes_from_its_variable_and_must_be_positive(monkeypatch) -> None:
    monkeypatch.delenv("HENVIS_CONSENT_CASE_REF_RETENTION_DAYS", raising=False)
    assert ConsentSettings().case_ref_retention_days == 365
    monkeypatch.setenv("HENVIS_CONSENT_CASE_REF_RETENTION_DAYS", "30")
    assert ConsentSettings().case_ref_retention_days == 30
    monkeypatch.setenv("HENVIS_CONSENT_CASE_REF_RETENTION_DAYS", "0")
    with pytest.raises(ValidationError):
        ConsentSettings()
