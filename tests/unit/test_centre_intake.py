"""The inbox's pure intake decisions: arriving referrals, withdrawals and unreadable messages."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from henvis.schemas.events import ManualHandling, ReferralOutcome
from henvis.services.centre import domain_intake
from henvis.services.centre.domain_intake import Placement
from tests.centre_fakes import personal_strings, referral_issued, referral_withdrawn

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


def test_a_new_referral_is_stored_new():
    arrival = domain_intake.receive_referral(referral_issued("herning"), "herning", None, None, NOW)
    assert arrival.result == "stored"
    assert arrival.lifecycle.state == "new" and arrival.lifecycle.contact_erased_at is None
    assert not arrival.replaces_returned and arrival.outgoing == ()


def test_a_referral_already_in_the_inbox_is_a_duplicate():
    arrival = domain_intake.receive_referral(
        referral_issued("herning"), "herning", Placement("herning", "contacted"), None, NOW
    )
    assert (arrival.result, arrival.lifecycle, arrival.outgoing) == ("duplicate", None, ())


def test_a_referral_overtaken_by_its_withdrawal_is_stored_withdrawn_and_erased():
    withdrawn_at = NOW - timedelta(hours=1)
    arrival = domain_intake.receive_referral(referral_issued("herning"), "herning", None, withdrawn_at, NOW)
    assert arrival.result == "stored_withdrawn"
    lifecycle = arrival.lifecycle
    assert (lifecycle.state, lifecycle.last_outcome) == ("withdrawn", "withdrawal_acknowledged")
    assert lifecycle.withdrawn_at == lifecycle.ended_at == withdrawn_at and lifecycle.contact_erased_at == NOW


def test_a_referral_returned_by_another_centre_starts_afresh_when_re_routed_here():
    returned = Placement("herning", "returned_wrong_centre")
    arrival = domain_intake.receive_referral(referral_issued("holstebro"), "holstebro", returned, None, NOW)
    assert arrival.result == "rerouted" and arrival.replaces_returned and arrival.lifecycle.state == "new"
    still_open = Placement("herning", "contacted")
    assert (
        domain_intake.receive_referral(referral_issued("holstebro"), "holstebro", still_open, None, NOW).result
        == "duplicate"
    )


def test_a_referral_on_another_centres_topic_opens_a_manual_case_without_personal_data():
    event = referral_issued("holstebro", person_index=3)
    arrival = domain_intake.receive_referral(event, "herning", None, None, NOW)
    assert arrival.result == "misrouted" and arrival.lifecycle is None
    (outgoing,) = arrival.outgoing
    case = outgoing.event
    assert outgoing.topic_base == "henvis.manual.v2" and isinstance(case, ManualHandling)
    assert (case.reason, case.source_event_id, case.source_event_type) == (
        "invalid_event",
        event.event_id,
        "referral.issued",
    )
    assert (case.referral_id, case.municipality_code, case.offence) == (event.referral_id, "661", event.offence)
    assert case.detail == "referral for centre holstebro arrived on the topic of centre herning"
    assert not any(value in case.model_dump_json() for value in personal_strings())


def test_manual_case_ids_are_derived_as_they_always_were():
    # Fixed values: a changed namespace or id parts would open every case a second time.
    event = referral_issued("holstebro").model_copy(update={"event_id": uuid.UUID(int=1)})
    misrouted = domain_intake.receive_referral(event, "herning", None, None, NOW).outgoing[0].event
    assert str(misrouted.event_id) == "afe584b1-6442-503b-b324-5d5a8bfc4b27"
    invalid = domain_intake.invalid_message(
        "referrals.herning.v1/0@7", "message on a centre topic is not a valid event", NOW
    )
    assert str(invalid.event.event_id) == "3541282f-b81b-52c6-a7cd-d904787992e3"
    assert invalid.topic_base == "henvis.manual.v2"
    assert invalid.event.detail == "message on a centre topic is not a valid event (referrals.herning.v1/0@7)"
    assert invalid.event.source_event_id is None and invalid.event.referral_id is None


def test_a_withdrawal_erases_a_stored_referral_and_acknowledges_once():
    referral_id = uuid.UUID(int=3)
    withdrawal = domain_intake.receive_withdrawal(
        referral_withdrawn(referral_id), Placement("herning", "contacted"), False, NOW
    )
    assert withdrawal.result == "erased" and not withdrawal.remember
    assert withdrawal.lifecycle.state == "withdrawn" and withdrawal.lifecycle.contact_erased_at == NOW
    assert withdrawal.audit_action == "contact_details_erased_withdrawal"
    (acknowledgement,) = withdrawal.history
    assert isinstance(acknowledgement, ReferralOutcome) and acknowledgement.outcome == "withdrawal_acknowledged"
    assert str(acknowledgement.event_id) == "1f954b22-78b2-5078-83bb-96719c2c26b4"
    assert [item.event for item in withdrawal.outgoing] == [acknowledgement]


def test_a_withdrawal_before_its_referral_is_remembered_and_acknowledged():
    withdrawal = domain_intake.receive_withdrawal(referral_withdrawn(uuid.UUID(int=3), "holstebro"), None, False, NOW)
    assert withdrawal.result == "tombstone" and withdrawal.remember
    assert withdrawal.lifecycle is None and withdrawal.history == () and withdrawal.audit_action is None
    (outgoing,) = withdrawal.outgoing
    assert outgoing.topic_base == "referral.outcomes.v1" and outgoing.event.centre == "holstebro"
    assert withdrawal.result in domain_intake.ACKNOWLEDGED


def test_a_withdrawal_seen_before_is_a_duplicate():
    event = referral_withdrawn(uuid.UUID(int=3))
    assert domain_intake.receive_withdrawal(event, None, True, NOW).result == "duplicate"
    assert domain_intake.receive_withdrawal(event, Placement("herning", "withdrawn"), False, NOW).result == "duplicate"
    assert "duplicate" not in domain_intake.ACKNOWLEDGED
