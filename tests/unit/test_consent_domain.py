"""Pure rules of the consent service: replay vs conflict, registry checks, withdrawals, leasing."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from henvis.registry import load_registry
from henvis.schemas.events import (
    ConsentGivenV2,
    ConsentWithdrawn,
    PersonalData,
    parse_decision,
    parse_event,
    referral_id_for,
)
from henvis.services.consent import delivery, domain, refusals
from henvis.services.consent.domain_keys import WithdrawnKeys
from henvis.shredding import open_personal_data
from tests import examples
from tests.consent_support import protection

PROTECTING = domain.Protecting(protection(), b"d" * 32)

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)


def test_the_same_event_written_differently_is_a_replay_not_a_conflict() -> None:
    original = examples.consent_given()
    rewritten = {**original, "person": {**original["person"], "phone": "22 34 56 78"}}
    reordered = dict(reversed(list(rewritten.items())))
    first, again = parse_decision(original), parse_decision(reordered)
    assert domain.verdict(domain.canonical_hash(first), domain.canonical_hash(again)) is domain.Verdict.REPLAY


def test_a_changed_field_under_the_same_event_id_is_a_conflict() -> None:
    original = examples.consent_given()
    changed = {**original, "offence": "drug_driving"}
    stored = domain.canonical_hash(parse_decision(original))
    assert domain.verdict(stored, domain.canonical_hash(parse_decision(changed))) is domain.Verdict.CONFLICT
    assert domain.verdict(None, stored) is domain.Verdict.NEW


def test_accepted_result_names_the_referral_only_for_a_consent_given() -> None:
    given = parse_decision(examples.consent_given())
    declined = parse_decision(examples.consent_declined())
    assert domain.accepted_result(given) == {
        "event_id": str(given.event_id),
        "status": "accepted",
        "referral_id": str(referral_id_for(given.event_id)),
    }
    assert domain.accepted_result(declined) == {"event_id": str(declined.event_id), "status": "accepted"}


def test_preferred_centre_must_be_one_of_the_registry_centres() -> None:
    registry = load_registry()
    unknown = parse_decision(examples.consent_given(preferred_centre="aarhus"))
    known = parse_decision(examples.consent_given(preferred_centre=registry.slugs[0]))
    assert [e["field"] for e in domain.registry_errors(unknown, registry)] == ["preferred_centre"]
    assert domain.registry_errors(known, registry) == []
    assert domain.registry_errors(parse_decision(examples.consent_declined()), registry) == []


PSEUDONYMS = PROTECTING.protection.pseudonyms


def test_withdrawal_by_referral_id_is_resolved_to_the_case_it_belongs_to() -> None:
    withdrawal = ConsentWithdrawn.model_validate(
        examples.consent_withdrawn(case_ref=None, referral_id=str(uuid.uuid4()))
    )
    withdrawn, errors = domain.resolve_withdrawal(withdrawal, domain.KnownReferral(PSEUDONYMS("4100-1")), PSEUDONYMS)
    assert errors == []
    assert withdrawn == WithdrawnKeys(PSEUDONYMS("4100-1"), str(withdrawal.referral_id))


def test_withdrawal_naming_an_unknown_referral_is_refused_on_referral_id() -> None:
    withdrawal = ConsentWithdrawn.model_validate(
        examples.consent_withdrawn(case_ref=None, referral_id=str(uuid.uuid4()))
    )
    withdrawn, errors = domain.resolve_withdrawal(withdrawal, None, PSEUDONYMS)
    assert withdrawn is None
    assert [(e["field"], e["type"]) for e in errors] == [("referral_id", "referral_unknown")]


def test_withdrawal_whose_referral_belongs_to_another_case_is_refused() -> None:
    withdrawal = ConsentWithdrawn.model_validate(
        examples.consent_withdrawn(case_ref="4100-2", referral_id=str(uuid.uuid4()))
    )
    _, errors = domain.resolve_withdrawal(withdrawal, domain.KnownReferral(PSEUDONYMS("4100-1")), PSEUDONYMS)
    assert [e["type"] for e in errors] == ["referral_case_mismatch"]


def test_withdrawal_by_case_ref_alone_withdraws_every_referral_of_the_case() -> None:
    withdrawal = ConsentWithdrawn.model_validate(examples.consent_withdrawn())
    assert domain.resolve_withdrawal(withdrawal, None, PSEUDONYMS) == (
        WithdrawnKeys(PSEUDONYMS(withdrawal.case_ref)),
        [],
    )


def _row(row_id: int, key: str, owner: str | None = None, until: datetime | None = None) -> delivery.OutboxRow:
    return delivery.OutboxRow(row_id, key, owner, until)


def test_a_leased_case_is_skipped_but_other_cases_are_taken() -> None:
    later = NOW + timedelta(seconds=30)
    rows = [_row(1, "A", "relay-2", later), _row(2, "B"), _row(3, "A"), _row(4, "C")]
    assert delivery.choose_lease(rows, NOW, limit=10) == [2, 4]


def test_an_expired_lease_no_longer_blocks_its_case() -> None:
    rows = [_row(1, "A", "relay-2", NOW - timedelta(seconds=1)), _row(2, "A")]
    assert delivery.choose_lease(rows, NOW, limit=10) == [1, 2]


def test_lease_takes_rows_in_outbox_order_up_to_the_limit() -> None:
    rows = [_row(i, f"case-{i % 3}") for i in range(1, 11)]
    assert delivery.choose_lease(rows, NOW, limit=4) == [1, 2, 3, 4]


def test_two_relays_never_hold_rows_of_the_same_case() -> None:
    rows = [_row(i, f"case-{i % 4}") for i in range(1, 21)]
    first = set(delivery.choose_lease(rows, NOW, limit=3))
    after_first = [_row(r.id, r.key, "relay-1", NOW + timedelta(seconds=30)) if r.id in first else r for r in rows]
    second = set(delivery.choose_lease(after_first, NOW, limit=20))
    keys_first = {r.key for r in rows if r.id in first}
    keys_second = {r.key for r in rows if r.id in second}
    assert first and second
    assert not keys_first & keys_second


@pytest.mark.parametrize(("failures", "expected"), [(0, 0.0), (1, 0.5), (2, 1.0), (3, 2.0), (10, 10.0), (1000, 10.0)])
def test_backoff_grows_and_is_capped(failures: int, expected: float) -> None:
    assert delivery.backoff_seconds(failures, cap=10.0) == expected


# ---------------------------------------------------------------------------- acceptance


def test_a_new_event_is_stored_as_its_record_and_the_outbox_entry_it_is_published_as() -> None:
    given = parse_decision(examples.consent_given(case_ref="4100-1"))
    acceptance = domain.decide_acceptance(None, given, "politi-test", NOW, PROTECTING)
    assert (acceptance.verdict, acceptance.event_id) == (domain.Verdict.NEW, given.event_id)
    record, entry = acceptance.new.record, acceptance.new.entry
    assert record == domain.EventRecord(
        event_id=str(given.event_id),
        event_type="consent.given",
        body_sha256=domain.canonical_hash(given),
        case_pseudonym=PSEUDONYMS("4100-1"),
        referral_id=str(referral_id_for(given.event_id)),
        client_name="politi-test",
        received_at=NOW,
    )
    assert (entry.event_id, entry.kafka_key) == (str(given.event_id), PSEUDONYMS("4100-1"))
    published = parse_event(entry.payload)
    assert isinstance(published, ConsentGivenV2) and published.case_pseudonym == PSEUDONYMS("4100-1")
    for secret in ("4100-1", given.person.full_name, given.person.phone):
        assert secret not in entry.payload
    opened = PersonalData.model_validate_json(
        open_personal_data(PROTECTING.data_key, referral_id_for(given.event_id), published.personal)
    )
    assert opened == PersonalData(case_ref="4100-1", person=given.person)
    data_key = acceptance.new.data_key
    assert (data_key.referral_id, data_key.grantee) == (record.referral_id, "centre:herning")
    assert data_key.case_pseudonym == record.case_pseudonym and data_key.created_at == NOW


def test_a_withdrawal_is_judged_as_sent_and_stored_as_resolved() -> None:
    body = examples.consent_withdrawn(case_ref=None, referral_id=str(uuid.uuid4()))
    submitted = ConsentWithdrawn.model_validate(body)
    withdrawn, _ = domain.resolve_withdrawal(submitted, domain.KnownReferral(PSEUDONYMS("4100-1")), PSEUDONYMS)
    new = domain.decide_acceptance(None, submitted, "politi-test", NOW, PROTECTING, withdrawn).new
    assert new.record.body_sha256 == domain.canonical_hash(submitted)
    assert (new.record.case_pseudonym, new.record.referral_id) == (PSEUDONYMS("4100-1"), None)
    published = parse_event(new.entry.payload)
    assert new.entry.kafka_key == PSEUDONYMS("4100-1") and published.referral_id == submitted.referral_id
    assert new.withdrawn_keys == WithdrawnKeys(PSEUDONYMS("4100-1"), str(body["referral_id"]))


def test_an_event_already_stored_is_a_replay_or_a_conflict_and_stores_nothing() -> None:
    body = examples.consent_declined()
    original, changed = parse_decision(body), parse_decision({**body, "offence": "drink_driving"})
    stored = domain.canonical_hash(original)
    replay = domain.decide_acceptance(stored, original, "politi-test", NOW, PROTECTING)
    conflict = domain.decide_acceptance(stored, changed, "politi-test", NOW, PROTECTING)
    assert (replay.verdict, replay.new) == (domain.Verdict.REPLAY, None)
    assert (conflict.verdict, conflict.new) == (domain.Verdict.CONFLICT, None)


def test_an_unknown_or_missing_event_type_is_named_as_the_failing_field() -> None:
    errors = [
        {"field": "body", "message": "x", "type": "union_tag_invalid"},
        {"field": "body", "message": "y", "type": "union_tag_not_found"},
        {"field": "person.phone", "message": "z", "type": "phone_invalid"},
    ]
    named = refusals.name_discriminator(errors)
    assert [(e["field"], e["message"]) for e in named] == [
        ("event_type", "is not an event type this endpoint accepts"),
        ("event_type", "y"),
        ("person.phone", "z"),
    ]
    assert refusals.event_id_conflict() == [
        {"field": "event_id", "message": "was already used for a different event", "type": "event_id_conflict"}
    ]
