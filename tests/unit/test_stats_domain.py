"""Every rate definition of the statistics on hand-made data (DESIGN §5, docs/researchers-guide.md)."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta

import pytest

from henvis.db import make_engine, migrate
from henvis.schemas.events import ReferralFact, ReferralOutcome
from henvis.services.stats import domain
from henvis.services.stats.store import Filters, StatsStore

MONDAY = date(2021, 5, 3)


def fact(
    referral_id,
    decision="accepted",
    *,
    municipality="657",
    offence="drink_driving",
    decided_on=MONDAY,
    due=None,
    event_id=None,
):
    return ReferralFact(
        event_id=event_id or uuid.uuid4(),
        occurred_at=datetime.combine(decided_on, datetime.min.time(), UTC) + timedelta(hours=10),
        referral_id=referral_id,
        decision=decision,
        offence=offence,
        municipality_code=municipality,
        centre="herning" if municipality == "657" else "viborg",
        decided_on=decided_on,
        contact_due_by=(due or decided_on + timedelta(days=1)) if decision == "accepted" else None,
    )


def outcome(referral_id, name, when: datetime, event_id=None):
    return ReferralOutcome(
        event_id=event_id or uuid.uuid4(), occurred_at=when, referral_id=referral_id, centre="herning", outcome=name
    )


def at(day: date, hour: int = 10) -> datetime:
    return datetime.combine(day, datetime.min.time(), UTC) + timedelta(hours=hour)


@pytest.fixture
def store(tmp_path) -> StatsStore:
    url = f"sqlite:///{tmp_path / 'stats.db'}"
    migrate(url, "stats")
    engine = make_engine(url)
    yield StatsStore(engine)
    engine.dispose()


def total(store: StatsStore, **filters) -> domain.RawFunnel:
    return store.funnels(Filters(**filters))[None]


# ---------------------------------------------------------------- the definitions


def test_offered_is_accepted_plus_declined_and_acceptance_is_their_ratio(store):
    for _ in range(6):
        store.apply_fact(fact(uuid.uuid4(), "accepted"))
    for _ in range(9):
        store.apply_fact(fact(uuid.uuid4(), "declined"))
    raw = total(store)
    assert (raw.accepted, raw.declined, raw.offered) == (6, 9, 15)
    published = domain.publish_single(raw, threshold=5)
    assert published["acceptance_rate"] == 0.4
    assert published["acceptance_percent"] == 40


def test_withdrawn_still_counts_as_accepted_and_is_shown_separately(store):
    ids = [uuid.uuid4() for _ in range(7)]
    for referral_id in ids:
        store.apply_fact(fact(referral_id))
    for referral_id in ids[:2]:
        store.apply_fact(fact(referral_id, "withdrawn", decided_on=MONDAY + timedelta(days=3)))
    raw = total(store)
    assert raw.accepted == 7
    assert raw.withdrawn == 2
    # the withdrawal date never moves the referral to another period
    assert total(store, date_from=MONDAY, date_to=MONDAY).accepted == 7


def test_first_interview_and_follow_up_rates_are_over_every_accepted_referral(store):
    ids = [uuid.uuid4() for _ in range(10)]
    for referral_id in ids:
        store.apply_fact(fact(referral_id))
    store.apply_fact(fact(ids[0], "withdrawn"))  # withdrawn stays in the denominator
    for referral_id in ids[:6]:
        store.apply_outcome(outcome(referral_id, "first_interview_held", at(MONDAY + timedelta(days=3))))
    for referral_id in ids[:3]:
        store.apply_outcome(outcome(referral_id, "follow_up_accepted", at(MONDAY + timedelta(days=4))))
    published = domain.publish_single(total(store), threshold=2)
    assert (published["first_interviews"], published["follow_ups"]) == (6, 3)
    assert published["first_interview_rate"] == 0.6
    assert published["follow_up_rate"] == 0.3


def test_a_follow_up_without_a_recorded_interview_counts_the_interview_too(store):
    referral_id = uuid.uuid4()
    store.apply_fact(fact(referral_id))
    store.apply_outcome(outcome(referral_id, "follow_up_accepted", at(MONDAY + timedelta(days=5))))
    raw = total(store)
    assert (raw.first_interviews, raw.follow_ups) == (1, 1)


def test_days_to_first_contact_use_the_earliest_attempt_of_any_contact_outcome(store):
    # decided Monday; attempts recorded out of order: Thursday's "contacted" first, then
    # Tuesday's "contact_attempted" -> 1 day, not 3.
    first = uuid.uuid4()
    store.apply_fact(fact(first))
    store.apply_outcome(outcome(first, "contacted", at(MONDAY + timedelta(days=3))))
    store.apply_outcome(outcome(first, "contact_attempted", at(MONDAY + timedelta(days=1))))
    # an unreachable person was still tried: that day counts as the first attempt
    second = uuid.uuid4()
    store.apply_fact(fact(second))
    store.apply_outcome(outcome(second, "unreachable", at(MONDAY + timedelta(days=2))))
    # returned to the wrong centre is not a contact attempt
    third = uuid.uuid4()
    store.apply_fact(fact(third))
    store.apply_outcome(outcome(third, "returned_wrong_centre", at(MONDAY + timedelta(days=1))))
    assert total(store).days_histogram == {1: 1, 2: 1}


def test_first_contact_day_is_the_danish_calendar_day():
    # 23:30 UTC on Monday is already Tuesday in Denmark (CEST, UTC+2)
    state = domain.apply_fact(
        None,
        referral_id="r",
        decision="accepted",
        offence="drink_driving",
        municipality_code="657",
        centre="herning",
        decided_on=MONDAY,
        contact_due_by=MONDAY,
    )
    state = domain.apply_outcome(
        state, referral_id="r", outcome="contacted", occurred_at=at(MONDAY, 23) + timedelta(minutes=30)
    )
    assert state.days_to_first_contact == 1
    assert state.contacted_by_due is False


def test_median_and_90th_percentile_of_days_to_first_contact():
    assert domain.median({1: 5, 2: 3, 7: 2}) == 1.5
    assert domain.median({1: 3, 4: 1, 9: 1}) == 1
    assert domain.percentile(dict.fromkeys(range(1, 11), 1), 0.9) == 9
    assert domain.percentile({1: 9, 30: 1}, 0.9) == 1
    assert domain.percentile({1: 8, 30: 2}, 0.9) == 30
    assert domain.median({}) is None and domain.percentile({}, 0.9) is None


def test_share_contacted_by_deadline_counts_attempts_on_or_before_contact_due_by(store):
    due = MONDAY + timedelta(days=1)
    on_time = [uuid.uuid4() for _ in range(4)]
    late = [uuid.uuid4() for _ in range(2)]
    never = [uuid.uuid4() for _ in range(2)]
    withdrawn = uuid.uuid4()
    for referral_id in [*on_time, *late, *never, withdrawn]:
        store.apply_fact(fact(referral_id, due=due))
    store.apply_fact(fact(withdrawn, "withdrawn"))
    for index, referral_id in enumerate(on_time):
        store.apply_outcome(outcome(referral_id, "contact_attempted", at(MONDAY + timedelta(days=index % 2))))
    for referral_id in late:
        store.apply_outcome(outcome(referral_id, "contacted", at(MONDAY + timedelta(days=4))))
    raw = total(store)
    # withdrawn referrals are not expected to be contacted: out of the denominator
    assert (raw.contacted_by_due, raw.due_referrals) == (4, 8)
    published = domain.publish_single(raw, threshold=2)
    assert published["contacted_by_deadline_share"] == 0.5
    assert published["contacted_by_deadline_percent"] == 50
    assert published["days_to_first_contact_median"] == 1
    assert published["days_to_first_contact_p90"] == 4


def test_an_empty_period_gives_zeros_and_no_rates(store):
    store.apply_fact(fact(uuid.uuid4(), decided_on=date(2021, 4, 1)))
    published = domain.publish_single(total(store, date_from=date(2022, 1, 1), date_to=date(2022, 1, 31)), threshold=5)
    assert {name: published[name] for name in domain.COUNT_FIELDS} == dict.fromkeys(domain.COUNT_FIELDS, 0)
    assert published["acceptance_rate"] is None and published["first_interview_rate"] is None
    assert published["days_to_first_contact_median"] is None
    assert published["suppressed"] == []


def test_period_municipality_and_offence_filters_use_the_decision(store):
    store.apply_fact(fact(uuid.uuid4(), decided_on=date(2021, 4, 30)))
    store.apply_fact(fact(uuid.uuid4(), decided_on=date(2021, 5, 1), municipality="791"))
    store.apply_fact(fact(uuid.uuid4(), decided_on=date(2021, 5, 31), offence="drug_driving"))
    store.apply_fact(fact(uuid.uuid4(), decided_on=date(2021, 6, 1)))
    assert total(store, date_from=date(2021, 5, 1), date_to=date(2021, 5, 31)).accepted == 2
    assert total(store, municipality="791").accepted == 1
    assert total(store, offence="drug_driving").accepted == 1
    by_month = store.funnels(Filters(), "month")
    assert {month: raw.accepted for month, raw in by_month.items()} == {"2021-04": 1, "2021-05": 2, "2021-06": 1}
    by_municipality = store.funnels(Filters(), "municipality")
    assert {code: raw.accepted for code, raw in by_municipality.items()} == {"657": 3, "791": 1}


# ---------------------------------------------------------------- order and duplicates


def test_outcomes_before_their_fact_are_kept_and_counted_once_the_fact_arrives(store):
    referral_id = uuid.uuid4()
    store.apply_outcome(outcome(referral_id, "contacted", at(MONDAY + timedelta(days=1))))
    store.apply_outcome(outcome(referral_id, "first_interview_held", at(MONDAY + timedelta(days=2))))
    assert total(store).first_interviews == 0  # not yet: the decision is unknown
    store.apply_fact(fact(referral_id))
    raw = total(store)
    assert (raw.accepted, raw.first_interviews, raw.days_histogram) == (1, 1, {1: 1})


def test_a_withdrawal_fact_before_the_yes_still_ends_as_accepted_and_withdrawn(store):
    referral_id = uuid.uuid4()
    store.apply_fact(fact(referral_id, "withdrawn", decided_on=MONDAY + timedelta(days=2)))
    store.apply_fact(fact(referral_id))
    raw = total(store, date_from=MONDAY, date_to=MONDAY)
    assert (raw.accepted, raw.withdrawn) == (1, 1)


def test_duplicate_events_change_nothing(store):
    referral_id = uuid.uuid4()
    accepted = fact(referral_id)
    interview = outcome(referral_id, "first_interview_held", at(MONDAY + timedelta(days=2)))
    assert store.apply_fact(accepted) is True
    assert store.apply_outcome(interview) is True
    assert store.apply_fact(accepted) is False
    assert store.apply_outcome(interview) is False
    raw = total(store)
    assert (raw.accepted, raw.first_interviews) == (1, 1)


def test_round_half_up_matches_how_the_report_rounds():
    assert domain.round_half_up(100 * 80 / 119) == 67
    assert domain.round_half_up(100 * 38 / 119) == 32
    assert domain.round_half_up(31.5) == 32
    assert domain.round_half_up(66.5) == 67


# ---------------------------------------------------------------- daily aggregates


def test_incremental_aggregates_equal_a_rebuild_from_the_referrals(store):
    """Whatever order facts and outcomes come in, the aggregates the queries read are the
    ones the referrals give when recomputed from scratch."""
    import random

    from henvis_dev.pilot import generate_pilot

    plan = generate_pilot(seed=5)
    events = [*plan.facts(), *plan.outcome_events()]
    random.Random(5).shuffle(events)
    for event in events:
        (store.apply_fact if isinstance(event, ReferralFact) else store.apply_outcome)(event)
    incremental = {group: store.funnels(Filters(), group) for group in (None, "month", "municipality")}
    assert incremental[None][None].accepted == 119 and incremental[None][None].first_interviews == 80
    store.rebuild_aggregates()
    assert {group: store.funnels(Filters(), group) for group in (None, "month", "municipality")} == incremental


def test_upgrading_a_database_with_referrals_builds_its_aggregates(tmp_path):
    import sqlalchemy as sa

    from henvis.services.stats.models import referrals

    url = f"sqlite:///{tmp_path / 'old.db'}"
    migrate(url, "stats", revision="0001_stats")
    engine = make_engine(url)
    with engine.begin() as conn:
        conn.execute(
            referrals.insert(),
            [
                {
                    "referral_id": str(uuid.uuid4()),
                    "decision": "accepted",
                    "withdrawn": False,
                    "offence": "drug_driving",
                    "municipality_code": "791",
                    "decided_on": MONDAY,
                    "decided_month": "2021-05",
                    "contact_due_by": MONDAY,
                    "days_to_first_contact": 2,
                    "contacted_by_due": False,
                    "first_interview": True,
                    "follow_up": False,
                },
                {
                    "referral_id": str(uuid.uuid4()),
                    "decision": "declined",
                    "withdrawn": False,
                    "offence": "drug_driving",
                    "municipality_code": "791",
                    "decided_on": MONDAY,
                    "decided_month": "2021-05",
                    "contact_due_by": None,
                    "days_to_first_contact": None,
                    "contacted_by_due": None,
                    "first_interview": False,
                    "follow_up": False,
                },
            ],
        )
    migrate(url, "stats")
    raw = StatsStore(engine).funnels(Filters(municipality="791"))[None]
    assert (raw.accepted, raw.declined, raw.first_interviews, raw.days_histogram) == (1, 1, 1, {2: 1})
    assert sa.inspect(engine).has_table("funnel_daily")
    engine.dispose()
