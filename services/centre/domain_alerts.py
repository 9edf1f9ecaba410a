"""Which open referrals are close to a deadline or past it, per centre: pure counting.

The counts feed the deadline gauges and the daily digest. They are numbers per centre and
deadline only, never a referral id, a name or anything else about a person.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, time

from henvis.deadlines import local_date, working_hours_until
from henvis.services.centre import domain
from henvis.services.centre.domain_inbox import Referral

#: The two deadlines a referral carries, as metric labels name them.
DEADLINES = ("contact", "treatment")


@dataclass(frozen=True)
class WorkingHours:
    """The centres' working day (Danish time) and the warning window in working hours."""

    opens: time = time(8)
    closes: time = time(16)
    due_soon_hours: float = 8.0


@dataclass
class DeadlineCounts:
    """Open referrals of one centre due soon or overdue, per deadline (``contact``, ``treatment``)."""

    due_soon: dict[str, int] = field(default_factory=lambda: dict.fromkeys(DEADLINES, 0))
    overdue: dict[str, int] = field(default_factory=lambda: dict.fromkeys(DEADLINES, 0))


def deadline_state(due_by: date, now: datetime, hours: WorkingHours) -> str | None:
    """``overdue`` the day after ``due_by``, ``due_soon`` within the window, else None."""
    if local_date(now) > due_by:
        return "overdue"
    if working_hours_until(now, due_by, hours.opens, hours.closes) <= hours.due_soon_hours:
        return "due_soon"
    return None


def pending_deadlines(referral: Referral) -> dict[str, date]:
    """The deadlines still to be met by ``referral``: none once it is closed or withdrawn."""
    pending = {}
    if domain.contact_pending(referral.state):
        pending["contact"] = referral.contact_due_by
    if domain.interview_pending(referral.state):
        pending["treatment"] = referral.treatment_due_by
    return pending


def deadline_counts(
    referrals: Iterable[Referral], now: datetime, hours: WorkingHours, centres: Iterable[str] = ()
) -> dict[str, DeadlineCounts]:
    """centre -> its due-soon and overdue counts; every centre in ``centres`` appears, zero or not."""
    counts = {centre: DeadlineCounts() for centre in centres}
    for referral in referrals:
        tally = counts.setdefault(referral.centre, DeadlineCounts())
        for deadline, due_by in pending_deadlines(referral).items():
            state = deadline_state(due_by, now, hours)
            if state == "overdue":
                tally.overdue[deadline] += 1
            elif state == "due_soon":
                tally.due_soon[deadline] += 1
    return counts
