"""The router's routing decisions (services/router/domain.py), without Kafka."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, date, datetime, timedelta

import pytest

from henvis.registry import load_registry
from henvis.schemas.events import (
    ConsentDeclinedV2,
    ConsentGivenV2,
    ConsentWithdrawnV2,
    ManualHandling,
    PersonalData,
    ReferralFact,
    ReferralIssued,
    ReferralOutcome,
    ReferralWithdrawn,
    referral_id_for,
)
from henvis.services.router import domain
from henvis.shredding import CasePseudonyms, new_data_key, open_personal_data, seal_personal_data

REGISTRY = load_registry()
NOW = datetime(2024, 3, 4, 12, 0, tzinfo=UTC)
PHONE = "+4522334455"
NAME = "Jens Peter Hansen"
CPR = "0101901234"
PSEUDONYMS = CasePseudonyms(b"router-test-pseudonym-secret-32b")
#: The data key of each referral these tests made (the consent service's key store, in a dict).
DATA_KEYS: dict[uuid.UUID, bytes] = {}

ELEVEN = {
    "657": "herning",
    "661": "holstebro",
    "665": "lemvig",
    "671": "struer",
    "740": "silkeborg",
    "756": "ikast-brande",
    "760": "ringkobing-skjern",
    "773": "morso",
    "779": "skive",
    "787": "thisted",
    "791": "viborg",
}


def given(municipality_code: str | None = "657", case_ref: str = "4100-12345-00001-24", **extra) -> ConsentGivenV2:
    """A consent as the consent service publishes it: the case by pseudonym, personal data sealed."""
    event_id = uuid.uuid4()
    referral_id = referral_id_for(event_id)
    DATA_KEYS[referral_id] = new_data_key()
    personal = PersonalData.model_validate(
        {"case_ref": case_ref, "person": {"full_name": NAME, "phone": PHONE, "cpr": CPR}}
    )
    data = {
        "event_id": str(event_id),
        "occurred_at": "2024-03-01T09:30:00+01:00",
        "case_pseudonym": PSEUDONYMS(case_ref),
        "offence": "drink_driving",
        "charged_on": "2024-02-28",
        "personal": seal_personal_data(DATA_KEYS[referral_id], referral_id, personal.model_dump_json().encode()),
        "consent_text_version": "v1",
        "recorded_by": "pb1234",
        **extra,
    }
    if municipality_code is not None:
        data["municipality_code"] = municipality_code
    return ConsentGivenV2.model_validate(data)


def opened(personal: str, referral_id: uuid.UUID) -> PersonalData:
    """What a sealed blob holds, opened with its referral's data key."""
    return PersonalData.model_validate_json(open_personal_data(DATA_KEYS[referral_id], referral_id, personal))


def declined(case_ref: str = "4100-12345-00002-24") -> ConsentDeclinedV2:
    return ConsentDeclinedV2(
        event_id=uuid.uuid4(),
        occurred_at=datetime(2024, 3, 1, 10, tzinfo=UTC),
        case_pseudonym=PSEUDONYMS(case_ref),
        offence="drug_driving",
        charged_on=date(2024, 3, 1),
        municipality_code="740",
    )


def withdrawn(case_ref: str = "4100-12345-00001-24", referral_id=None) -> ConsentWithdrawnV2:
    return ConsentWithdrawnV2(
        event_id=uuid.uuid4(),
        occurred_at=datetime(2024, 3, 2, 8, tzinfo=UTC),
        case_pseudonym=PSEUDONYMS(case_ref),
        referral_id=referral_id,
        reason="person_changed_mind",
    )


class RouterUnderTest:
    """The domain plus a dict standing in for the state store (as the adapter uses it)."""

    def __init__(self, now: datetime = NOW):
        self.table: dict[str, domain.CaseState] = {}
        self.now = now

    def ctx(self) -> domain.Context:
        return domain.Context(registry=REGISTRY, now=self.now, partition=0)

    def send(self, message) -> domain.Result:
        raw = message if isinstance(message, bytes) else message.to_bytes()
        result = domain.handle_message(raw, self.table.get, self.ctx())
        self.table.update(result.state)
        return result

    def expire(self, wait: timedelta) -> list[domain.Result]:
        results = []
        for key, state in list(self.table.items()):
            result = domain.expire_pending(key, state, self.ctx(), wait)
            if result:
                self.table.update(result.state)
                results.append(result)
        return results


def events_of(result: domain.Result, kind) -> list:
    return [out.event for out in result.outputs if isinstance(out.event, kind)]


def topics_of(result: domain.Result) -> list[str]:
    return [out.topic for out in result.outputs]


def assert_no_personal_data(result: domain.Result) -> None:
    for out in result.outputs:
        text = out.event.to_bytes().decode() + out.key.decode(errors="replace")
        for secret in (NAME, "Hansen", PHONE, "22334455", CPR, "4100-12345"):
            assert secret not in text, f"{out.event.event_type} on {out.topic} leaks personal data"


# ---------------------------------------------------------------- routing by residence


@pytest.mark.parametrize("code,slug", sorted(ELEVEN.items()))
def test_each_municipality_reaches_its_own_centre_topic(code: str, slug: str):
    router = RouterUnderTest()
    consent = given(code)

    result = router.send(consent)

    [referral] = events_of(result, ReferralIssued)
    assert referral.centre == slug
    assert referral.referral_id == referral_id_for(consent.event_id)
    assert opened(referral.personal, referral.referral_id).person.phone == PHONE
    assert referral.routed_by == "residence"
    referral_outputs = [out for out in result.outputs if isinstance(out.event, ReferralIssued)]
    assert referral_outputs[0].topic == f"referrals.{slug}.v2"
    assert referral_outputs[0].key == str(referral.referral_id).encode()
    [fact] = events_of(result, ReferralFact)
    assert (fact.decision, fact.centre, fact.municipality_code) == ("accepted", slug, code)
    assert fact.referral_id == referral.referral_id
    assert not events_of(result, ManualHandling)
    assert_no_personal_data(result)


def test_the_registry_covers_exactly_the_eleven_municipalities():
    assert {c.municipality_code: c.slug for c in REGISTRY.centres} == ELEVEN


def test_deadlines_come_from_the_consent_time_not_the_clock():
    # Friday 20 December 2024, 23:30 UTC is already Saturday in Denmark; the next working day
    # after Saturday 21st is Monday 23rd; treatment is 14 calendar days after the Danish date.
    consent = given("661", occurred_at="2024-12-20T23:30:00+00:00", charged_on="2024-12-20")
    router = RouterUnderTest(now=datetime(2026, 1, 1, tzinfo=UTC))

    [referral] = events_of(router.send(consent), ReferralIssued)

    assert referral.contact_due_by == date(2024, 12, 23)
    assert referral.treatment_due_by == date(2025, 1, 4)
    assert referral.issued_at == datetime(2026, 1, 1, tzinfo=UTC)


def test_issued_event_ids_are_deterministic_so_a_replay_is_recognisable():
    consent = given("779")

    first = RouterUnderTest().send(consent)
    second = RouterUnderTest().send(consent)  # a fresh router: no memory of the first run

    assert [o.event.event_id for o in first.outputs] == [o.event.event_id for o in second.outputs]
    assert len({o.event.event_id for o in first.outputs}) == len(first.outputs)


# ---------------------------------------------------------------- preferred centre, manual handling


def test_preferred_centre_overrides_the_residence_route():
    result = RouterUnderTest().send(given("657", preferred_centre="viborg"))

    [referral] = events_of(result, ReferralIssued)
    assert referral.centre == "viborg"
    assert referral.routed_by == "preferred_centre"
    assert result.outputs[0].topic == "referrals.viborg.v2"


def test_preferred_centre_also_routes_a_person_from_outside_the_district():
    result = RouterUnderTest().send(given("101", preferred_centre="skive"))

    assert [e.centre for e in events_of(result, ReferralIssued)] == ["skive"]


def test_unknown_preferred_centre_goes_to_manual_handling_as_invalid():
    result = RouterUnderTest().send(given("657", preferred_centre="aarhus"))

    assert not events_of(result, ReferralIssued)
    [manual] = events_of(result, ManualHandling)
    assert manual.reason == "invalid_event"
    assert "preferred_centre" in manual.detail
    [fact] = events_of(result, ReferralFact)
    assert fact.decision == "accepted" and fact.centre is None


@pytest.mark.parametrize(
    "code,reason", [("101", "outside_district"), ("851", "outside_district"), (None, "no_municipality")]
)
def test_persons_the_district_cannot_route_go_to_manual_handling_and_are_counted(code, reason):
    consent = given(code)
    result = RouterUnderTest().send(consent)

    assert not events_of(result, ReferralIssued)
    assert topics_of(result) == ["henvis.manual.v2", "referral.facts.v1"]
    [manual] = events_of(result, ManualHandling)
    assert manual.reason == reason
    assert manual.source_event_id == consent.event_id
    assert manual.referral_id == referral_id_for(consent.event_id)
    assert opened(manual.personal, manual.referral_id).person.full_name == NAME  # for the desk, with its key
    [fact] = events_of(result, ReferralFact)
    assert (fact.decision, fact.centre, fact.municipality_code) == ("accepted", None, code)
    assert_no_personal_data(result)


# ---------------------------------------------------------------- invalid input


def test_unknown_municipality_code_is_invalid_and_names_the_field_only():
    raw = json.loads(given("657").to_bytes())
    raw["municipality_code"] = "999"

    result = RouterUnderTest().send(json.dumps(raw).encode())

    [manual] = events_of(result, ManualHandling)
    assert manual.reason == "invalid_event"
    assert manual.detail == "invalid fields: municipality_code"
    assert manual.source_event_id == uuid.UUID(raw["event_id"])
    assert manual.source_event_type == "consent.given"
    assert manual.personal is None  # a message that does not parse is never passed on
    assert not events_of(result, ReferralFact)
    assert_no_personal_data(result)


def test_plain_personal_data_on_the_topic_is_refused_without_echoing_it():
    raw = json.loads(given("657").to_bytes())
    raw["person"] = {"full_name": NAME, "phone": "+46 70 123 45 67"}

    [manual] = events_of(RouterUnderTest().send(json.dumps(raw).encode()), ManualHandling)

    assert manual.detail == "invalid fields: person"
    assert "70 123" not in manual.to_bytes().decode() and NAME not in manual.to_bytes().decode()


def test_plain_text_garbage_is_never_sealed_and_gets_a_stable_id():
    garbage = b"Jens Hansen 22334455 please call"
    router = RouterUnderTest()

    [manual] = events_of(router.send(garbage), ManualHandling)
    [again] = events_of(router.send(garbage), ManualHandling)

    assert manual.reason == "invalid_event"
    assert manual.personal is None
    assert manual.source_event_id is None
    assert "22334455" not in manual.to_bytes().decode()
    assert manual.event_id == again.event_id


def test_an_event_that_does_not_belong_on_the_consent_topic_is_invalid():
    outcome = ReferralOutcome(
        event_id=uuid.uuid4(), occurred_at=NOW, referral_id=uuid.uuid4(), centre="herning", outcome="contacted"
    )

    [manual] = events_of(RouterUnderTest().send(outcome), ManualHandling)

    assert manual.reason == "invalid_event"
    assert manual.source_event_type == "referral.outcome"
    assert "does not belong" in manual.detail


# ---------------------------------------------------------------- declined


def test_a_declined_decision_becomes_a_fact_only():
    decision = declined()

    result = RouterUnderTest().send(decision)

    assert topics_of(result) == ["referral.facts.v1"]
    [fact] = events_of(result, ReferralFact)
    assert (fact.decision, fact.municipality_code, fact.offence) == ("declined", "740", "drug_driving")
    assert fact.referral_id == referral_id_for(decision.event_id)
    assert fact.decided_on == date(2024, 3, 1)


# ---------------------------------------------------------------- withdrawal


def test_withdrawal_after_consent_reaches_the_centre_that_got_the_referral():
    router = RouterUnderTest()
    consent = given("773", preferred_centre="thisted")
    router.send(consent)

    result = router.send(withdrawn())

    [withdrawal] = events_of(result, ReferralWithdrawn)
    assert withdrawal.referral_id == referral_id_for(consent.event_id)
    assert withdrawal.centre == "thisted"
    assert result.outputs[0].topic == "referrals.thisted.v2"
    [fact] = events_of(result, ReferralFact)
    assert (fact.decision, fact.centre, fact.decided_on) == ("withdrawn", "thisted", date(2024, 3, 2))
    assert_no_personal_data(result)


def test_withdrawal_naming_the_referral_withdraws_only_that_referral_of_its_case():
    router = RouterUnderTest()
    first, second = given("657"), given("661")
    router.send(first)
    router.send(second)

    result = router.send(withdrawn(referral_id=referral_id_for(second.event_id)))

    assert [(w.centre, w.referral_id) for w in events_of(result, ReferralWithdrawn)] == [
        ("holstebro", referral_id_for(second.event_id))
    ]


def test_a_second_withdrawal_of_the_same_case_sends_nothing_more():
    router = RouterUnderTest()
    router.send(given("657"))
    router.send(withdrawn())

    assert router.send(withdrawn()).outputs == []


def test_withdrawal_before_consent_means_the_centre_never_gets_the_contact_details():
    router = RouterUnderTest()
    early = router.send(withdrawn())
    assert early.outputs == []  # kept pending

    consent = given("657")
    result = router.send(consent)

    assert not events_of(result, ReferralIssued)
    facts = events_of(result, ReferralFact)
    assert [f.decision for f in facts] == ["accepted", "withdrawn"]
    assert {f.referral_id for f in facts} == {referral_id_for(consent.event_id)}
    # Nothing is left pending, so it never reaches manual handling.
    assert router.expire(timedelta(0)) == []


def test_a_withdrawal_whose_consent_never_arrives_goes_to_manual_handling_after_the_wait():
    router = RouterUnderTest()
    withdrawal = withdrawn(case_ref="4100-99999-00001-24")
    router.send(withdrawal)

    router.now = NOW + timedelta(days=6)
    assert router.expire(timedelta(days=7)) == []

    router.now = NOW + timedelta(days=7)
    [result] = router.expire(timedelta(days=7))
    [manual] = events_of(result, ManualHandling)
    assert manual.reason == "withdrawal_unmatched"
    assert manual.source_event_id == withdrawal.event_id
    assert router.expire(timedelta(days=7)) == []  # reported once
    # A consent arriving after that is routed normally again.
    assert events_of(router.send(given("657", case_ref="4100-99999-00001-24")), ReferralIssued)


def test_withdrawal_of_a_case_in_manual_handling_tells_manual_handling():
    router = RouterUnderTest()
    consent = given("101")
    router.send(consent)

    result = router.send(withdrawn())

    [manual] = events_of(result, ManualHandling)
    assert manual.reason == "withdrawal_unmatched"
    assert manual.referral_id == referral_id_for(consent.event_id)
    assert [f.decision for f in events_of(result, ReferralFact)] == ["withdrawn"]


# ---------------------------------------------------------------- duplicates and state


def test_a_duplicate_event_id_does_not_become_a_second_referral():
    router = RouterUnderTest()
    consent = given("791")
    router.send(consent)

    again = router.send(consent)

    assert again.duplicate
    assert again.outputs == []


def test_duplicate_declines_and_withdrawals_are_dropped_too():
    router = RouterUnderTest()
    decision = declined()
    router.send(given("657"))
    withdrawal = withdrawn()
    router.send(decision)
    router.send(withdrawal)

    assert router.send(decision).duplicate
    assert router.send(withdrawal).duplicate


def test_the_stored_state_holds_no_personal_data():
    router = RouterUnderTest()
    router.send(given("657"))
    router.send(given("101", case_ref="4100-12345-00009-24"))
    router.send(withdrawn(case_ref="4100-12345-00010-24"))

    stored = json.dumps({key: state.model_dump(mode="json") for key, state in router.table.items()})
    for secret in (NAME, PHONE, CPR, "4100-12345"):
        assert secret not in stored


@pytest.mark.parametrize("personal", ["c2VhbGVk", "not base64 at all, but long enough to pass a length check!!!!", ""])
def test_a_blob_that_cannot_be_sealed_data_goes_to_manual_handling_with_a_reason(personal):
    raw = json.loads(given("657").to_bytes())
    raw["personal"] = personal

    result = RouterUnderTest().send(json.dumps(raw).encode())

    [manual] = events_of(result, ManualHandling)
    assert (manual.reason, manual.detail) == ("invalid_event", "invalid fields: personal")
    assert manual.personal is None and not events_of(result, ReferralIssued)
    assert personal not in manual.to_bytes().decode() or not personal
