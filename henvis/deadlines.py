"""Deadlines that travel with a referral (DESIGN §4): pure date arithmetic, no I/O."""

from __future__ import annotations

from datetime import date, datetime, timedelta
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
