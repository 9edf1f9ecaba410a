"""The event contract: what police systems may send and what is refused, and how."""

from __future__ import annotations

import json
import re
import uuid

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from henvis.schemas.errors import describe, safe_errors
from henvis.schemas.events import (
    EVENT_TYPES,
    ConsentGiven,
    parse_decision,
    parse_event,
    parse_police_event,
    referral_id_for,
)
from tests import examples

#: Every example: what police send (parsed by the consent API), what each topic carries.
ALL_EXAMPLES = [
    *((f"police:{name}", make) for name, make in examples.POLICE_EXAMPLES.items()),
    *((f"topic:{name}", make) for name, make in examples.EXAMPLES.items()),
]


def parse(data: dict):
    """A police event when it names the case by its number, else an event as a topic carries it."""
    police = data.get("event_type", "").startswith("consent.") and "case_pseudonym" not in data
    return parse_police_event(data) if police else parse_event(data)


def errors_of(data: dict) -> list[dict]:
    with pytest.raises(ValidationError) as caught:
        parse(data)
    return safe_errors(caught.value)


def fields_of(data: dict) -> set[str]:
    return {error["field"] for error in errors_of(data)}


@pytest.mark.parametrize("event_type", sorted(EVENT_TYPES))
def test_every_event_type_round_trips_through_json(event_type):
    event = examples.example_event(event_type)
    again = parse_event(event.to_bytes())
    assert again == event
    assert again.event_type == event_type


@pytest.mark.parametrize(("name", "make"), ALL_EXAMPLES, ids=[name for name, _ in ALL_EXAMPLES])
def test_unknown_fields_are_rejected_by_name(name, make):
    assert fields_of(make(surprise="x")) == {"surprise"}


@pytest.mark.parametrize(("name", "make"), ALL_EXAMPLES, ids=[name for name, _ in ALL_EXAMPLES])
def test_timestamps_must_carry_a_timezone(name, make):
    assert "occurred_at" in fields_of(make(occurred_at="2021-03-02T10:15:00"))


@pytest.mark.parametrize(("name", "make"), ALL_EXAMPLES, ids=[name for name, _ in ALL_EXAMPLES])
def test_event_id_must_be_a_uuid(name, make):
    assert fields_of(make(event_id="not-a-uuid")) == {"event_id"}


@pytest.mark.parametrize(("name", "make"), ALL_EXAMPLES, ids=[name for name, _ in ALL_EXAMPLES])
def test_personal_data_in_the_clear_is_refused_on_every_topic(name, make):
    """No event a topic carries has a field for a name, phone or case number in plain text."""
    if name.startswith("police:"):
        return
    for key in ("case_ref", "person"):
        assert key in fields_of(make(**{key: examples.person() if key == "person" else "4100-80261-00123-21"}))


@pytest.mark.parametrize(
    "written",
    [
        "22345678",
        "22 34 56 78",
        "+45 22 34 56 78",
        "+4522345678",
        "0045 2234 5678",
        "(+45) 22-34-56-78",
        "2234 5678",
        "22.34.56.78",
    ],
)
def test_usual_danish_phone_notations_are_normalised(written):
    event = parse_decision(examples.consent_given(person=examples.person(phone=written)))
    assert event.person.phone == "+4522345678"


@pytest.mark.parametrize(
    "written",
    [
        "1234567",
        "123456789",
        "12345678",
        "02345678",
        "+46 22345678",
        "0046 22345678",
        "2234567a",
        "",
        "   ",
        "+45",
        "tlf 22345678",
    ],
)
def test_phone_numbers_that_are_not_danish_mobile_or_landline_are_refused(written):
    errors = errors_of(examples.consent_given(person=examples.person(phone=written)))
    assert [error["field"] for error in errors] == ["person.phone"]


@pytest.mark.parametrize(
    "written,stored", [("010190-1234", "0101901234"), ("2902044321", "2902044321"), ("3112894321", "3112894321")]
)
def test_cpr_with_a_real_birth_date_is_accepted(written, stored):
    assert parse_decision(examples.consent_given(person=examples.person(cpr=written))).person.cpr == stored


@pytest.mark.parametrize(
    "written",
    ["3202901234", "0013901234", "2902011234", "310490-12345", "01019012", "0101-901234", "abcdefghij", "01019O1234"],
)
def test_cpr_that_is_not_ten_digits_with_a_real_date_is_refused(written):
    assert fields_of(examples.consent_given(person=examples.person(cpr=written))) == {"person.cpr"}


def test_cpr_century_follows_the_seventh_digit():
    # 29 Feb exists in 2000 (digit 7 = 4, year 00 -> 2000) but not in 1900 (digit 7 = 0).
    assert parse_decision(examples.consent_given(person=examples.person(cpr="2902004321"))).person.cpr
    assert fields_of(examples.consent_given(person=examples.person(cpr="2902000321"))) == {"person.cpr"}


def test_cpr_and_email_and_address_are_optional():
    person = {"full_name": "Åse Ørsted", "phone": "31 41 59 26"}
    event = parse_decision(examples.consent_given(person=person))
    assert event.person.cpr is None and event.person.email is None and event.person.postal_address is None


@pytest.mark.parametrize("code", ["", "12", "1234", "abc", "999", "000"])
def test_municipality_code_must_be_a_real_danish_code(code):
    assert fields_of(examples.consent_given(municipality_code=code)) == {"municipality_code"}


def test_a_code_outside_the_district_is_valid_input():
    assert parse_decision(examples.consent_given(municipality_code="751")).municipality_code == "751"


def test_a_person_without_danish_address_has_no_municipality():
    data = examples.consent_given()
    del data["municipality_code"]
    assert parse_decision(data).municipality_code is None


@pytest.mark.parametrize("offence", ["speeding", "DRINK_DRIVING", ""])
def test_offence_is_one_of_three(offence):
    assert fields_of(examples.consent_given(offence=offence)) == {"offence"}


def test_charge_after_the_decision_is_refused():
    errors = errors_of(examples.consent_given(charged_on="2021-03-03"))
    assert any("charged_on" in error["message"] for error in errors)


@pytest.mark.parametrize("key", ["person", "full_name", "phone", "email", "cpr", "postal_address"])
def test_a_declined_decision_carrying_personal_data_is_rejected(key):
    value = examples.person() if key == "person" else examples.person()[key]
    errors = errors_of(examples.consent_declined(**{key: value}))
    assert errors[0]["type"] == "declined_with_personal_data"
    assert errors[0]["field"] == key
    assert "personal data" in errors[0]["message"]


def test_a_withdrawal_must_name_a_case_or_a_referral():
    data = examples.consent_withdrawn()
    del data["case_ref"]
    assert errors_of(data)[0]["type"] == "withdrawal_target"
    by_referral = examples.consent_withdrawn(referral_id=str(uuid.uuid4()))
    del by_referral["case_ref"]
    assert parse(by_referral).referral_id


def test_withdrawal_reason_is_a_closed_set_so_no_free_text_travels():
    assert fields_of(examples.consent_withdrawn(reason="he called and said Jens Hansen 22345678")) == {"reason"}


def test_referral_id_is_deterministic_from_the_consent_event_id():
    consent_id = uuid.uuid4()
    assert referral_id_for(consent_id) == referral_id_for(uuid.UUID(str(consent_id)))
    assert referral_id_for(consent_id) != referral_id_for(uuid.uuid4())


def test_decisions_are_keyed_by_case_pseudonym_and_referrals_by_referral_id():
    given_event = examples.example_event("consent.given")
    referral = examples.example_event("referral.issued")
    assert given_event.kafka_key() == examples.PSEUDONYM.encode()
    assert referral.kafka_key() == str(referral.referral_id).encode()


def test_facts_cannot_carry_personal_data_or_case_ref():
    for key in ("case_ref", "person", "phone", "cpr"):
        assert key in fields_of(examples.referral_fact(**{key: "x"}))
    assert "case_ref" not in ConsentGiven.model_fields.keys() - {"case_ref"}


# ---------------------------------------------------------------- hostile input


def echoes(submitted: str, rendered: str) -> bool:
    """Whether a response repeats a submitted value (too short a value proves nothing)."""
    return len(submitted.strip()) >= 4 and submitted in rendered


DANISH_NAMES = st.lists(
    st.sampled_from(
        [
            "Søren",
            "Ærø",
            "Øster-Gård",
            "Åse",
            "Mette",
            "Jens",
            "Anne-Mette",
            "O'Neil",
            "Bjørn",
            "Høj",
            "Ådalen",
            "Ulla",
            "Kirstine",
        ]
    ),
    min_size=1,
    max_size=4,
).map(" ".join)

HOSTILE = st.one_of(
    st.text(min_size=201, max_size=400, alphabet=st.characters(categories=["L"])),
    st.text(min_size=1, max_size=40).map(lambda s: s + "\u0000"),
    st.text(min_size=1, max_size=40).map(lambda s: "\u202e" + s),  # right-to-left override
    st.sampled_from(
        [
            "'; DROP TABLE consent;--",
            "<script>alert(1)</script>",
            'Robert"); --',
            "😀😀",
            "{{7*7}}",
            "${jndi:ldap://x}",
            "Jens\nHansen\r",
            "\t",
            "42",
        ]
    ),
    st.text(alphabet="0123456789<>;{}\\", min_size=1, max_size=30),
)


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
@given(name=DANISH_NAMES)
def test_danish_names_pass(name):
    assert parse_decision(examples.consent_given(person=examples.person(full_name=name))).person.full_name == " ".join(
        name.split()
    )


@settings(max_examples=500)
@given(text=st.one_of(DANISH_NAMES, st.text(alphabet=st.characters(max_codepoint=0x2FF), max_size=30)))
def test_a_name_the_quick_path_accepts_is_one_the_thorough_check_accepts_unchanged(text):
    from henvis.schemas.person import _PLAIN_NAME, check_name_thoroughly

    if _PLAIN_NAME.fullmatch(text):
        assert check_name_thoroughly(text) == text


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(garbage=HOSTILE)
def test_hostile_names_fail_naming_the_field_without_echoing_it(garbage):
    data = examples.consent_given(person=examples.person(full_name=garbage))
    errors = errors_of(data)
    assert [error["field"] for error in errors] == ["person.full_name"]
    rendered = json.dumps({"detail": describe(errors), "errors": errors}, ensure_ascii=False)
    assert not echoes(garbage, rendered)


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(garbage=HOSTILE, field=st.sampled_from(["phone", "email", "cpr"]))
def test_hostile_contact_fields_fail_without_echoing(garbage, field):
    data = examples.consent_given(person=examples.person(**{field: garbage}))
    errors = errors_of(data)
    assert {error["field"] for error in errors} == {f"person.{field}"}
    assert not echoes(garbage, json.dumps(errors, ensure_ascii=False))


@settings(max_examples=100)
@given(street=HOSTILE.filter(lambda s: any(c in s for c in "<>{}\\\u0000\u202e") or len(s) > 200))
def test_hostile_addresses_fail(street):
    data = examples.consent_given(
        person=examples.person(postal_address={"street": street, "postcode": "7400", "city": "Herning"})
    )
    assert fields_of(data) == {"person.postal_address.street"}


@settings(max_examples=100)
@given(case_ref=HOSTILE.filter(lambda s: not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9./-]{0,63}", s)))
def test_hostile_case_refs_fail(case_ref):
    assert fields_of(examples.consent_given(case_ref=case_ref)) == {"case_ref"}


def test_error_messages_never_contain_the_submitted_values():
    person = {"full_name": "<b>Jens</b>", "phone": "+46 701234567", "email": "jens@@x", "cpr": "3213901234"}
    data = examples.consent_given(person=person, case_ref="<case 4100>")
    rendered = json.dumps(errors_of(data), ensure_ascii=False)
    for value in ("Jens", "701234567", "jens@@x", "3213901234", "4100"):
        assert value not in rendered
