"""Valid example events (as JSON-ready dicts) that tests change one field at a time: what police
systems send the consent API (``consent_given`` ...), and what each topic carries (``EXAMPLES``)."""

from __future__ import annotations

import base64
import uuid
from datetime import UTC, datetime

from henvis.schemas.events import EVENT_TYPES, Event, referral_id_for


def person(**overrides) -> dict:
    return {
        "full_name": "Søren Ærø-Østergård",
        "phone": "+4522345678",
        "email": "soren@example.dk",
        "postal_address": {"street": "Bredgade 12, 2. th.", "postcode": "7400", "city": "Herning"},
        "cpr": "0101901234",
        **overrides,
    }


def consent_given(**overrides) -> dict:
    return {
        "event_id": str(uuid.uuid4()),
        "event_type": "consent.given",
        "occurred_at": "2021-03-02T10:15:00+01:00",
        "case_ref": "4100-80261-00123-21",
        "offence": "drink_driving",
        "charged_on": "2021-03-01",
        "municipality_code": "657",
        "person": person(),
        "consent_text_version": "2020-03",
        "recorded_by": "politi-1234",
        **overrides,
    }


def consent_declined(**overrides) -> dict:
    return {
        "event_id": str(uuid.uuid4()),
        "event_type": "consent.declined",
        "occurred_at": "2021-03-02T10:15:00+01:00",
        "case_ref": "4100-80261-00124-21",
        "offence": "drug_driving",
        "charged_on": "2021-03-02",
        "municipality_code": "791",
        **overrides,
    }


def consent_withdrawn(**overrides) -> dict:
    return {
        "event_id": str(uuid.uuid4()),
        "event_type": "consent.withdrawn",
        "occurred_at": "2021-03-05T09:00:00+01:00",
        "case_ref": "4100-80261-00123-21",
        "reason": "person_changed_mind",
        **overrides,
    }


#: A well-formed sealed blob for schema tests (it opens under no key: they never open it).
SEALED = base64.b64encode(bytes(range(24)) + b"sealed personal data, in a test" + bytes(16)).decode("ascii")
#: A well-formed case pseudonym (64 hex digits).
PSEUDONYM = "5e" * 32


def consent_given_sealed(**overrides) -> dict:
    """``consent.given`` as the consent service publishes it: case by pseudonym, personal data sealed."""
    return {
        "event_id": str(uuid.uuid4()),
        "event_type": "consent.given",
        "schema_version": 2,
        "occurred_at": "2021-03-02T10:15:00+01:00",
        "case_pseudonym": PSEUDONYM,
        "offence": "drink_driving",
        "charged_on": "2021-03-01",
        "municipality_code": "657",
        "personal": SEALED,
        "consent_text_version": "2020-03",
        "recorded_by": "politi-1234",
        **overrides,
    }


def consent_declined_sealed(**overrides) -> dict:
    return {
        "event_id": str(uuid.uuid4()),
        "event_type": "consent.declined",
        "schema_version": 2,
        "occurred_at": "2021-03-02T10:15:00+01:00",
        "case_pseudonym": PSEUDONYM,
        "offence": "drug_driving",
        "charged_on": "2021-03-02",
        "municipality_code": "791",
        **overrides,
    }


def consent_withdrawn_sealed(**overrides) -> dict:
    return {
        "event_id": str(uuid.uuid4()),
        "event_type": "consent.withdrawn",
        "schema_version": 2,
        "occurred_at": "2021-03-05T09:00:00+01:00",
        "case_pseudonym": PSEUDONYM,
        "reason": "person_changed_mind",
        **overrides,
    }


def referral_issued(**overrides) -> dict:
    consent_id = uuid.uuid4()
    return {
        "event_id": str(uuid.uuid4()),
        "event_type": "referral.issued",
        "schema_version": 2,
        "occurred_at": "2021-03-02T10:15:01+01:00",
        "referral_id": str(referral_id_for(consent_id)),
        "consent_event_id": str(consent_id),
        "centre": "herning",
        "routed_by": "residence",
        "offence": "drink_driving",
        "charged_on": "2021-03-01",
        "municipality_code": "657",
        "personal": SEALED,
        "contact_due_by": "2021-03-03",
        "treatment_due_by": "2021-03-16",
        "issued_at": datetime(2021, 3, 2, 9, 15, 1, tzinfo=UTC).isoformat(),
        **overrides,
    }


def referral_withdrawn(**overrides) -> dict:
    return {
        "event_id": str(uuid.uuid4()),
        "event_type": "referral.withdrawn",
        "occurred_at": "2021-03-05T09:00:01+01:00",
        "referral_id": str(uuid.uuid4()),
        "centre": "herning",
        "reason": "person_changed_mind",
        **overrides,
    }


def referral_outcome(**overrides) -> dict:
    return {
        "event_id": str(uuid.uuid4()),
        "event_type": "referral.outcome",
        "occurred_at": "2021-03-03T11:00:00+01:00",
        "referral_id": str(uuid.uuid4()),
        "centre": "herning",
        "outcome": "contacted",
        **overrides,
    }


def referral_fact(**overrides) -> dict:
    return {
        "event_id": str(uuid.uuid4()),
        "event_type": "referral.fact",
        "occurred_at": "2021-03-02T10:15:01+01:00",
        "referral_id": str(uuid.uuid4()),
        "decision": "accepted",
        "offence": "drink_driving",
        "municipality_code": "657",
        "centre": "herning",
        "decided_on": "2021-03-02",
        "contact_due_by": "2021-03-03",
        "treatment_due_by": "2021-03-16",
        **overrides,
    }


def manual_handling(**overrides) -> dict:
    return {
        "event_id": str(uuid.uuid4()),
        "event_type": "manual.handling",
        "schema_version": 2,
        "occurred_at": "2021-03-02T10:15:01+01:00",
        "reason": "outside_district",
        "source_event_id": str(uuid.uuid4()),
        "source_event_type": "consent.given",
        "municipality_code": "751",
        "offence": "drink_driving",
        "referral_id": str(uuid.uuid4()),
        "personal": SEALED,
        **overrides,
    }


#: One valid example of every event police systems send the consent API.
POLICE_EXAMPLES = {
    "consent.given": consent_given,
    "consent.declined": consent_declined,
    "consent.withdrawn": consent_withdrawn,
}

#: One valid example of every event type on a topic.
EXAMPLES = {
    "consent.given": consent_given_sealed,
    "consent.declined": consent_declined_sealed,
    "consent.withdrawn": consent_withdrawn_sealed,
    "referral.issued": referral_issued,
    "referral.withdrawn": referral_withdrawn,
    "referral.outcome": referral_outcome,
    "referral.fact": referral_fact,
    "manual.handling": manual_handling,
}
assert set(EXAMPLES) == set(EVENT_TYPES)


def example_event(event_type: str) -> Event:
    from henvis.schemas.events import parse_event

    return parse_event(EXAMPLES[event_type]())
