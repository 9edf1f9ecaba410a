"""The seeded pilot plan reproduces the status report's figures (DESIGN §5)."""

from __future__ import annotations

from collections import Counter
from datetime import date

from henvis.deadlines import local_date
from henvis.registry import load_registry
from henvis.schemas.events import ConsentDeclined, ConsentGiven, Outcome, parse_police_event, referral_id_for
from henvis.schemas.person import PERSONAL_DATA_FIELDS
from henvis.services.stats import domain
from henvis_dev.pilot import PILOT_FIRST_DAY, PILOT_LAST_DAY, generate_pilot


def test_the_plan_has_the_reports_figures():
    plan = generate_pilot()
    summary = plan.summary()
    assert summary["accepted"] == 119
    assert summary["first_interviews"] == 80
    assert summary["follow_ups"] == 38
    assert summary["offered"] == summary["accepted"] + summary["declined"]
    assert 280 <= summary["offered"] <= 320  # the district expected up to about 40 % to accept
    assert 1 <= summary["withdrawn"] <= 8
    assert domain.round_half_up(100 * 80 / 119) == 67 and domain.round_half_up(100 * 38 / 119) == 32


def test_the_same_seed_gives_the_same_plan_and_another_seed_another():
    first, again, other = generate_pilot(2022), generate_pilot(2022), generate_pilot(7)
    assert [event.to_bytes() for event in first.decisions] == [event.to_bytes() for event in again.decisions]
    assert first.outcomes == again.outcomes
    assert [event.event_id for event in first.decisions] != [event.event_id for event in other.decisions]
    assert other.summary()["accepted"] == 119  # the figures hold for any seed


def test_decisions_span_ten_months_in_all_eleven_municipalities():
    plan = generate_pilot()
    days = [local_date(decision.occurred_at) for decision in plan.decisions]
    assert min(days) >= PILOT_FIRST_DAY and max(days) <= PILOT_LAST_DAY
    assert len({(day.year, day.month) for day in days}) == 10
    registry = load_registry()
    per_municipality = Counter(decision.municipality_code for decision in plan.decisions)
    assert set(per_municipality) == {centre.municipality_code for centre in registry.centres}
    assert per_municipality["791"] > per_municipality["773"]  # Viborg is larger than Morsø


def test_events_are_valid_and_declines_carry_no_personal_data():
    plan = generate_pilot()
    for event in [*plan.decisions, *plan.withdrawals]:
        assert parse_police_event(event.to_bytes()) == event
    for decision in plan.declined:
        assert isinstance(decision, ConsentDeclined)
        assert not PERSONAL_DATA_FIELDS.intersection(decision.model_dump())
    people = [decision.person for decision in plan.accepted]
    assert any(set("æøå") & set(person.full_name.lower()) for person in people)
    assert sum(person.cpr is not None for person in people) >= 20
    assert len({person.phone for person in people}) == len(people)


def test_outcomes_follow_their_decision_and_withdrawn_referrals_have_none():
    plan = generate_pilot()
    decided = {referral_id_for(decision.event_id): decision.occurred_at for decision in plan.accepted}
    assert not plan.withdrawn_referral_ids & set(plan.outcomes)
    assert set(plan.outcomes) == set(decided) - plan.withdrawn_referral_ids
    first_attempt_days = []
    for referral_id, steps in plan.outcomes.items():
        moments = [moment for _, moment in steps]
        assert moments == sorted(moments) and moments[0] > decided[referral_id]
        assert max(moments).date() < date(2022, 4, 1)
        names = [name for name, _ in steps]
        if Outcome.FOLLOW_UP_ACCEPTED in names:
            assert Outcome.FIRST_INTERVIEW_HELD in names
        first_attempt_days.append((local_date(moments[0]) - local_date(decided[referral_id])).days)
    assert sum(days <= 5 for days in first_attempt_days) / len(first_attempt_days) > 0.8
    assert any(steps[0][0] == Outcome.CONTACT_ATTEMPTED for steps in plan.outcomes.values())
    assert any(name == Outcome.UNREACHABLE for steps in plan.outcomes.values() for name, _ in steps)


def test_facts_and_outcome_events_give_the_reports_figures_when_applied():
    plan = generate_pilot()
    states: dict = {}
    for fact in plan.facts():
        key = str(fact.referral_id)
        states[key] = domain.apply_fact(
            states.get(key),
            referral_id=key,
            decision=str(fact.decision),
            offence=str(fact.offence),
            municipality_code=fact.municipality_code,
            centre=fact.centre,
            decided_on=fact.decided_on,
            contact_due_by=fact.contact_due_by,
        )
    for event in plan.outcome_events():
        key = str(event.referral_id)
        states[key] = domain.apply_outcome(
            states.get(key), referral_id=key, outcome=str(event.outcome), occurred_at=event.occurred_at
        )
    published = domain.publish_single(domain.funnel_of(states.values()), threshold=5)
    assert published["accepted"] == 119
    assert published["first_interview_percent"] == 67
    assert published["follow_up_percent"] == 32
    assert all(isinstance(decision, (ConsentGiven, ConsentDeclined)) for decision in plan.decisions)
