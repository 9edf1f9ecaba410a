"""Deadline warnings: which open referrals are due within N working hours or overdue, per centre."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError

from henvis.deadlines import DANISH_TIME, working_hours_until
from henvis.services.centre import store_intake
from henvis.services.centre.api import build_app
from henvis.services.centre.domain_alerts import WorkingHours, deadline_counts
from henvis.services.centre.domain_inbox import Referral
from tests.centre_fakes import KEYS, auth, centre_settings, personal_strings, referral_issued

EIGHT_TO_FOUR = (time(8), time(16))


def _danish(*args: int) -> datetime:
    return datetime(*args, tzinfo=DANISH_TIME)


def test_working_hours_count_only_the_working_day_of_working_days():
    monday_ten = _danish(2021, 3, 8, 10)
    assert working_hours_until(monday_ten, date(2021, 3, 8), *EIGHT_TO_FOUR) == 6
    assert working_hours_until(monday_ten, date(2021, 3, 9), *EIGHT_TO_FOUR) == 14
    # Friday afternoon to Monday: the weekend adds nothing.
    assert working_hours_until(_danish(2021, 3, 5, 15), date(2021, 3, 8), *EIGHT_TO_FOUR) == 9
    # Wednesday before Easter to the Tuesday after: four Danish holidays in between.
    assert working_hours_until(_danish(2021, 3, 31, 12), date(2021, 4, 6), *EIGHT_TO_FOUR) == 12
    # After closing time, and on the evening of the deadline day: nothing left.
    assert working_hours_until(_danish(2021, 3, 8, 17), date(2021, 3, 8), *EIGHT_TO_FOUR) == 0
    assert working_hours_until(_danish(2021, 3, 9, 1), date(2021, 3, 8), *EIGHT_TO_FOUR) == 0


def _referral(centre="herning", state="new", contact=date(2021, 3, 8), treatment=date(2021, 3, 22)) -> Referral:
    return Referral(
        referral_id="r",
        centre=centre,
        state=state,
        offence="drink_driving",
        charged_on=date(2021, 3, 1),
        municipality_code="657",
        contact_due_by=contact,
        treatment_due_by=treatment,
        issued_at=datetime(2021, 3, 5, 9, tzinfo=UTC),
        last_outcome=None,
        contact_erased_at=None,
    )


def test_counts_per_centre_and_deadline_and_only_for_deadlines_still_to_meet():
    monday_ten = _danish(2021, 3, 8, 10)
    referrals = [
        _referral(),  # contact due today: 6 working hours left
        _referral(contact=date(2021, 3, 9)),  # 14 left: not yet
        _referral(contact=date(2021, 3, 5)),  # due last Friday
        _referral(state="contacted", contact=date(2021, 3, 5)),  # contact made: only treatment counts
        _referral(state="contacted", contact=date(2021, 3, 5), treatment=date(2021, 3, 8)),
        _referral(state="first_interview_held", contact=date(2021, 3, 1), treatment=date(2021, 3, 1)),
        _referral(state="declined_by_person", contact=date(2021, 3, 1), treatment=date(2021, 3, 1)),
        _referral(state="withdrawn", contact=date(2021, 3, 1), treatment=date(2021, 3, 1)),
        _referral(centre="holstebro", contact=date(2021, 3, 1), treatment=date(2021, 3, 5)),
    ]
    counts = deadline_counts(referrals, monday_ten, WorkingHours(due_soon_hours=8), ["herning", "holstebro", "lemvig"])
    assert counts["herning"].due_soon == {"contact": 1, "treatment": 1}
    assert counts["herning"].overdue == {"contact": 1, "treatment": 0}
    assert counts["holstebro"].overdue == {"contact": 1, "treatment": 1}
    assert counts["lemvig"].due_soon == counts["lemvig"].overdue == {"contact": 0, "treatment": 0}
    wider = deadline_counts(referrals, monday_ten, WorkingHours(due_soon_hours=14), ["herning"])
    assert wider["herning"].due_soon["contact"] == 2


def test_a_working_day_that_ends_before_it_starts_is_refused():
    with pytest.raises(ValidationError, match="WORKING_DAY_CLOSES"):
        centre_settings("sqlite://", working_day_opens="16:00", working_day_closes="08:00")


def test_the_gauges_show_due_soon_and_overdue_per_centre_without_personal_data(database_url):
    app = build_app(centre_settings(database_url), keys=KEYS)
    engine = app.state.centre.engine
    today = datetime.now(UTC).astimezone(DANISH_TIME).date()
    for index, (contact, treatment) in enumerate(
        [
            (today, today + timedelta(days=30)),  # contact due today: at most 8 working hours left
            (today - timedelta(days=2), today + timedelta(days=30)),  # contact overdue
            (today - timedelta(days=2), today - timedelta(days=1)),  # both overdue
            (today + timedelta(days=30), today + timedelta(days=40)),  # nothing to worry about yet
        ]
    ):
        event = referral_issued("herning", person_index=index, contact_due_by=contact, treatment_due_by=treatment)
        assert store_intake.ingest_issued(engine, event, "herning") == "stored"
    with TestClient(app, base_url="http://localhost") as client:
        assert client.get("/v1/referrals", headers=auth("tok-herning")).status_code == 200
        text = client.get("/metrics").text
    engine.dispose()
    assert 'henvis_centre_referrals_due_soon{centre="herning",deadline="contact"} 1.0' in text
    assert 'henvis_centre_referrals_overdue{centre="herning",deadline="contact"} 2.0' in text
    assert 'henvis_centre_referrals_overdue{centre="herning",deadline="treatment"} 1.0' in text
    assert 'henvis_centre_referrals_overdue{centre="holstebro",deadline="contact"} 0.0' in text
    assert not any(value in text for value in personal_strings())
