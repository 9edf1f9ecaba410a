"""Deadlines that travel with a referral (DESIGN §4): pure date arithmetic, no I/O."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

import holidays

DANISH_TIME = ZoneInfo("Europe/Copenhagen")


@lru_cache(maxsize=64)
def _danish_holidays(year: int) -> holidays.HolidayBase:
    return holidays.country_holidays("DK", years=year)


def is_working_day(day: date) -> bool:
    """Monday to Friday and not a Danish public holiday."""
    return day.weekday() < 5 and day not in _danish_holidays(day.year)


@lru_cache(maxsize=4096)
def add_working_days(start: date, working_days: int) -> date:
    """The day ``working_days`` working days after ``start`` (start itself never counts)."""
    day = start
    remaining = working_days
    while remaining > 0:
        day += timedelta(days=1)
        if is_working_day(day):
            remaining -= 1
    return day


@lru_cache(maxsize=1024)  # a consent's decision day and both its deadlines start from one moment
def local_date(moment: datetime) -> date:
    """The calendar date in Denmark of an aware timestamp: deadlines are Danish days."""
    return moment.astimezone(DANISH_TIME).date()


def contact_due_by(issued_at: datetime, working_days: int) -> date:
    return add_working_days(local_date(issued_at), working_days)


def treatment_due_by(issued_at: datetime, days: int) -> date:
    return local_date(issued_at) + timedelta(days=days)


def working_hours_until(now: datetime, due_by: date, opens: time, closes: time) -> float:
    """Working hours left from ``now`` until the end of the Danish day ``due_by``.

    A working hour is one between ``opens`` and ``closes`` (Danish time) on a working day;
    the day ``due_by`` counts to its close, as the inbox calls a referral overdue only the
    day after. 0 once ``due_by`` has passed or when no working hour is left before it.
    """
    local_now = now.astimezone(DANISH_TIME)
    day = local_now.date()
    hours = 0.0
    while day <= due_by:
        if is_working_day(day):
            start = datetime.combine(day, opens, DANISH_TIME)
            end = datetime.combine(day, closes, DANISH_TIME)
            hours += max(0.0, (end - max(start, local_now)).total_seconds() / 3600)
        day += timedelta(days=1)
    return hours
