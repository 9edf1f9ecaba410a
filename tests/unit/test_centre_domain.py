"""The outcome state machine and inbox rules, as a caseworker and a researcher see them."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from henvis.services.centre import domain

ALL = [
    "contact_attempted",
    "contacted",
    "first_interview_held",
    "follow_up_accepted",
    "unreachable",
    "declined_by_person",
    "returned_wrong_centre",
]

# Written out by hand (not read from domain.TRANSITIONS) so the test states the rules.
EXPECTED_LEGAL = {
    "new": {
        "contact_attempted",
        "contacted",
        "first_interview_held",
        "unreachable",
        "declined_by_person",
        "returned_wrong_centre",
    },
    "contact_attempted": {
        "contact_attempted",
        "contacted",
        "first_interview_held",
        "unreachable",
        "declined_by_person",
        "returned_wrong_centre",
    },
    "contacted": {"first_interview_held", "unreachable", "declined_by_person", "returned_wrong_centre"},
    "first_interview_held": {"follow_up_accepted", "declined_by_person"},
    "unreachable": {"contacted", "first_interview_held"},
    "follow_up_accepted": set(),
    "declined_by_person": set(),
    "returned_wrong_centre": set(),
    "withdrawn": set(),
}

CASES = [(state, outcome) for state in EXPECTED_LEGAL for outcome in ALL]


@pytest.mark.parametrize(("state", "outcome"), CASES, ids=[f"{s}->{o}" for s, o in CASES])
def test_every_transition_is_legal_or_refused_with_a_sentence(state, outcome):
    if outcome in EXPECTED_LEGAL[state]:
        decision = domain.decide(state, outcome)
        assert decision.new_state == outcome
        assert decision.repeat is False
    elif outcome == state:
        # recording the outcome the referral already stands at is an idempotent repeat
        assert domain.decide(state, outcome).repeat is True
    else:
        with pytest.raises(domain.IllegalTransition) as refused:
            domain.decide(state, outcome)
        sentence = str(refused.value)
        assert sentence.endswith(".") and len(sentence.split()) >= 5


def test_buttons_shown_are_exactly_the_legal_outcomes():
    for state, legal in EXPECTED_LEGAL.items():
        assert set(domain.next_outcomes(state)) == legal


def test_follow_up_needs_a_first_interview_and_says_so():
    with pytest.raises(domain.IllegalTransition, match="first interview"):
        domain.decide("contacted", "follow_up_accepted")


def test_nothing_can_be_recorded_after_a_withdrawal():
    with pytest.raises(domain.IllegalTransition, match="withdrawn consent"):
        domain.decide("withdrawn", "contacted")


def test_withdrawal_acknowledgement_is_not_a_caseworker_outcome():
    with pytest.raises(domain.IllegalTransition):
        domain.decide("new", "withdrawal_acknowledged")


def test_another_contact_attempt_is_a_new_event_not_a_repeat():
    assert domain.decide("contact_attempted", "contact_attempted").repeat is False


TODAY = date(2026, 11, 25)


@pytest.mark.parametrize(
    ("state", "contact_due", "treatment_due", "expected"),
    [
        ("new", TODAY, TODAY + timedelta(days=14), "open"),
        ("new", TODAY - timedelta(days=1), TODAY + timedelta(days=13), "overdue"),
        ("contact_attempted", TODAY - timedelta(days=1), TODAY + timedelta(days=13), "open"),
        ("contacted", TODAY - timedelta(days=20), TODAY - timedelta(days=6), "overdue"),
        ("first_interview_held", TODAY - timedelta(days=20), TODAY - timedelta(days=6), "open"),
        ("unreachable", TODAY - timedelta(days=20), TODAY - timedelta(days=6), "closed"),
        ("follow_up_accepted", TODAY, TODAY, "closed"),
        ("withdrawn", TODAY - timedelta(days=20), TODAY - timedelta(days=6), "withdrawn"),
    ],
)
def test_status_marks_a_missed_deadline_as_overdue(state, contact_due, treatment_due, expected):
    assert domain.status_of(state, contact_due, treatment_due, TODAY).value == expected


def test_open_filter_includes_overdue_referrals():
    assert domain.matches_filter(domain.Status.OVERDUE, "open")
    assert not domain.matches_filter(domain.Status.CLOSED, "open")
    assert domain.matches_filter(domain.Status.WITHDRAWN, "all")


NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


def test_occurred_at_may_be_historical_but_not_before_the_charge():
    domain.check_occurred_at(datetime(2020, 6, 1, 9, 0, tzinfo=UTC), date(2020, 5, 30), NOW)  # pilot replay
    with pytest.raises(domain.InvalidOccurredAt, match="charge date"):
        domain.check_occurred_at(datetime(2020, 5, 29, 9, 0, tzinfo=UTC), date(2020, 5, 30), NOW)


def test_occurred_at_in_the_future_is_refused():
    with pytest.raises(domain.InvalidOccurredAt, match="future"):
        domain.check_occurred_at(NOW + timedelta(hours=1), date(2026, 11, 1), NOW)
    domain.check_occurred_at(NOW + timedelta(minutes=1), date(2026, 11, 1), NOW)  # clock skew tolerated


def test_retention_clock_starts_when_the_referral_ends():
    ended = NOW - timedelta(days=90)
    assert domain.purge_due("follow_up_accepted", ended, NOW, 90)
    assert domain.purge_due("withdrawn", ended, NOW, 90)
    assert not domain.purge_due("follow_up_accepted", NOW - timedelta(days=89), NOW, 90)
    assert not domain.purge_due("contacted", ended, NOW, 90)
