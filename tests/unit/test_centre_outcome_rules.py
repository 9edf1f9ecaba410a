"""Recording an outcome and viewing the inbox, as pure decisions (no database)."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta

import pytest

from henvis.services.centre import domain, domain_inbox, domain_outcomes
from henvis.services.centre.domain_inbox import Contact, HistoryEntry, Referral
from henvis.services.centre.domain_outcomes import EarlierOutcome, RecordOutcome
from tests import examples

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
TODAY = date(2026, 11, 25)
REFERRAL_ID = str(uuid.UUID(int=42))
CONTACT = Contact(
    case_ref="4100-80261-00123-21",
    full_name="Mette Kjær Sørensen",
    phone="+4521436587",
    email=None,
    street="Vestergade 14, 1. tv.",
    postcode="7400",
    city="Herning",
    cpr=None,
)


def _referral(state: str = "new", contact: Contact | None = CONTACT, **changes) -> Referral:
    values = {
        "referral_id": REFERRAL_ID,
        "centre": "herning",
        "state": state,
        "offence": "drink_driving",
        "charged_on": TODAY - timedelta(days=3),
        "municipality_code": "657",
        "contact_due_by": TODAY + timedelta(days=1),
        "treatment_due_by": TODAY + timedelta(days=14),
        "issued_at": NOW - timedelta(days=1),
        "last_outcome": None,
        "contact_erased_at": None if contact else NOW,
        "contact": contact,
    }
    values.update(changes)
    return Referral(**values)


def _request(outcome: str, event_id: uuid.UUID = uuid.UUID(int=7), occurred_at: datetime = NOW) -> RecordOutcome:
    return RecordOutcome(
        centre="herning",
        referral_id=REFERRAL_ID,
        outcome=outcome,
        actor="anne.herning",
        actor_kind="user",
        occurred_at=occurred_at,
        event_id=event_id,
    )


def test_a_new_outcome_changes_the_state_and_is_published():
    recording = domain_outcomes.record_outcome(_referral(), _request("contacted"), None, None, NOW)
    assert recording.recorded == domain_outcomes.Recorded(str(uuid.UUID(int=7)), REFERRAL_ID, "contacted", "open", True)
    assert recording.change == domain_outcomes.StateChange("contacted", "contacted", None)
    assert recording.audit_action == "outcome_recorded:contacted"
    (outgoing,) = recording.outgoing
    assert outgoing.topic_base == "referral.outcomes.v1"
    assert (outgoing.event.event_id, outgoing.event.outcome, outgoing.event.centre) == (
        uuid.UUID(int=7),
        "contacted",
        "herning",
    )


def test_closing_starts_the_retention_clock_and_reopening_stops_it():
    closed = domain_outcomes.record_outcome(_referral("contacted"), _request("unreachable"), None, None, NOW)
    assert closed.change.ended_at == NOW and closed.recorded.status == "closed"
    reopened = domain_outcomes.record_outcome(_referral("unreachable"), _request("contacted"), None, None, NOW)
    assert reopened.change.ended_at is None and reopened.recorded.status == "open"


def test_the_same_event_id_again_is_answered_as_before_and_changes_nothing():
    earlier = EarlierOutcome(str(uuid.UUID(int=7)), REFERRAL_ID, "contacted")
    recording = domain_outcomes.record_outcome(_referral("contacted"), _request("contacted"), earlier, None, NOW)
    assert recording.recorded.created is False and recording.recorded.event_id == earlier.event_id
    assert recording.change is None and recording.outgoing == ()


def test_an_event_id_used_for_something_else_is_a_conflict():
    earlier = EarlierOutcome(str(uuid.UUID(int=7)), REFERRAL_ID, "contacted")
    with pytest.raises(domain_outcomes.EventIdConflict):
        domain_outcomes.record_outcome(_referral("contacted"), _request("first_interview_held"), earlier, None, NOW)
    other_referral = EarlierOutcome(str(uuid.UUID(int=7)), str(uuid.UUID(int=43)), "contacted")
    with pytest.raises(domain_outcomes.EventIdConflict):
        domain_outcomes.record_outcome(_referral("contacted"), _request("contacted"), other_referral, None, NOW)


def test_a_double_click_is_answered_with_the_event_that_set_the_state():
    recording = domain_outcomes.record_outcome(_referral("contacted"), _request("contacted"), None, "first-event", NOW)
    assert recording.recorded == domain_outcomes.Recorded("first-event", REFERRAL_ID, "contacted", "open", False)
    assert recording.change is None


def test_illegal_outcomes_and_impossible_times_are_refused():
    with pytest.raises(domain.IllegalTransition):
        domain_outcomes.record_outcome(_referral("new"), _request("follow_up_accepted"), None, None, NOW)
    with pytest.raises(domain.InvalidOccurredAt):
        domain_outcomes.record_outcome(
            _referral(), _request("contacted", occurred_at=NOW + timedelta(hours=1)), None, None, NOW
        )


def test_a_returned_referral_goes_to_manual_handling_with_its_key_and_its_contact_details_sealed():
    recording = domain_outcomes.record_outcome(
        _referral(sealed=examples.SEALED), _request("returned_wrong_centre", uuid.UUID(int=2)), None, None, NOW
    )
    assert [item.topic_base for item in recording.outgoing] == ["referral.outcomes.v1", "henvis.manual.v2"]
    assert recording.hands_over_key  # the key store releases the key to the desk instead of this centre
    case = recording.outgoing[1].event
    assert str(case.event_id) == "ba830009-3fb8-5501-b859-c94c5b78240b"  # derived from the outcome's event id
    assert (case.reason, str(case.referral_id), case.municipality_code, case.offence) == (
        "returned_wrong_centre",
        REFERRAL_ID,
        "657",
        "drink_driving",
    )
    # The contact details travel exactly as they came, sealed under the referral's data key.
    assert case.personal == examples.SEALED and case.source_event_id is None
    assert "Mette" not in case.model_dump_json()


def test_other_outcomes_keep_the_key_with_the_centre():
    recording = domain_outcomes.record_outcome(_referral(), _request("contacted"), None, None, NOW)
    assert not recording.hands_over_key


def test_erased_contact_details_are_not_passed_on():
    recording = domain_outcomes.record_outcome(
        _referral(contact=None, sealed=None), _request("returned_wrong_centre"), None, None, NOW
    )
    assert recording.outgoing[1].event.personal is None


def test_the_inbox_lists_matching_referrals_most_urgent_first():
    late = _referral(referral_id="late", contact_due_by=TODAY - timedelta(days=2))
    soon = _referral(referral_id="soon")
    called = _referral("contact_attempted", referral_id="called", contact_due_by=TODAY - timedelta(days=5))
    closed = _referral("declined_by_person", referral_id="closed")
    listed = domain_inbox.inbox([soon, closed, called, late], "open", TODAY)
    assert [entry["referral_id"] for entry in listed] == ["late", "soon", "called"]
    assert listed[0]["status"] == "overdue" and "person" not in listed[0]
    assert [entry["referral_id"] for entry in domain_inbox.inbox([soon, closed, late], "overdue", TODAY)] == ["late"]
    assert domain_inbox.open_and_overdue([soon, closed, called, late], TODAY) == {"herning": (3, 1)}


def test_the_detail_shows_contact_details_until_they_are_erased():
    history = [HistoryEntry("e1", "contacted", NOW, "anne.herning")]
    shown = domain_inbox.detail(_referral("contacted"), history, TODAY)
    assert shown["person"]["postal_address"] == {
        "street": "Vestergade 14, 1. tv.",
        "postcode": "7400",
        "city": "Herning",
    }
    assert shown["outcomes"] == [
        {"event_id": "e1", "outcome": "contacted", "occurred_at": NOW.isoformat(), "recorded_by": "anne.herning"}
    ]
    assert domain_inbox.access_action(shown) == "view_contact_details"
    erased = domain_inbox.detail(_referral("withdrawn", contact=None), [], TODAY)
    assert erased["person"] is None and erased["contact_erased_at"] == NOW.isoformat()
    assert domain_inbox.access_action(erased) == "view_referral"
