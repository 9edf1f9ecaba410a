"""Deadlines: contact the next working day (Danish holidays excluded), treatment within 14 days."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from henvis.deadlines import add_working_days, contact_due_by, is_working_day, treatment_due_by


def test_next_working_day_skips_the_weekend():
    friday = datetime(2021, 3, 5, 14, tzinfo=UTC)
    assert contact_due_by(friday, 1) == date(2021, 3, 8)


def test_easter_is_not_a_working_day():
    # Wednesday before Easter 2021 (31 March): Maundy Thursday, Good Friday, Easter Monday are holidays.
    assert contact_due_by(datetime(2021, 3, 31, 10, tzinfo=UTC), 1) == date(2021, 4, 6)


def test_christmas_and_new_year():
    assert contact_due_by(datetime(2021, 12, 24, 10, tzinfo=UTC), 1) == date(
        2021, 12, 27
    )  # 25th/26th are a weekend anyway
    assert contact_due_by(datetime(2021, 12, 31, 10, tzinfo=UTC), 1) == date(2022, 1, 3)
    assert not is_working_day(date(2020, 12, 25)) and not is_working_day(date(2022, 1, 1))


def test_deadlines_use_the_danish_calendar_day():
    # 23:30 UTC on Thursday 4 March is already Friday 5 March in Denmark.
    late_thursday = datetime(2021, 3, 4, 23, 30, tzinfo=UTC)
    assert contact_due_by(late_thursday, 1) == date(2021, 3, 8)
    assert treatment_due_by(late_thursday, 14) == date(2021, 3, 19)


@given(start=st.dates(min_value=date(2020, 1, 1), max_value=date(2030, 12, 31)), days=st.integers(1, 10))
def test_working_day_arithmetic_lands_on_working_days_only(start, days):
    due = add_working_days(start, days)
    assert is_working_day(due)
    between = [start + timedelta(days=offset) for offset in range(1, (due - start).days + 1)]
    assert sum(is_working_day(day) for day in between) == days
