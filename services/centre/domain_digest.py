"""The daily digest to a centre's shared mailbox: counts only, never anything about a person.

Pure: the referrals and the clock come in, numbers and the text of the e-mail go out.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from henvis.deadlines import local_date
from henvis.services.centre import domain
from henvis.services.centre.domain_alerts import WorkingHours, deadline_state, pending_deadlines
from henvis.services.centre.domain_inbox import Referral

#: A digest counts as "new" what arrived since the one before.
DIGEST_PERIOD = timedelta(days=1)


@dataclass(frozen=True)
class DigestCounts:
    """One centre's open referrals: issued in the last day, due soon (not yet late), overdue."""

    new: int = 0
    due_soon: int = 0
    overdue: int = 0


def digest_counts(
    referrals: Iterable[Referral], now: datetime, hours: WorkingHours, centres: Iterable[str]
) -> dict[str, DigestCounts]:
    """centre -> its counts, for every centre in ``centres`` (zero counts included)."""
    tallies = {centre: [0, 0, 0] for centre in centres}
    today = local_date(now)
    for referral in referrals:
        tally = tallies.get(referral.centre)
        if tally is None:
            continue
        tally[0] += referral.issued_at > now - DIGEST_PERIOD
        if referral.status(today) is domain.Status.OVERDUE:
            tally[2] += 1
        elif any(deadline_state(due, now, hours) == "due_soon" for due in pending_deadlines(referral).values()):
            tally[1] += 1
    return {centre: DigestCounts(*tally) for centre, tally in tallies.items()}


def digest_text(
    centre_name: str, counts: DigestCounts, inbox_url: str, now: datetime, hours: WorkingHours
) -> tuple[str, str]:
    """Subject and plain-text body (Danish, as the centres work) of one centre's digest."""
    day = local_date(now).strftime("%d.%m.%Y")
    subject = f"henvis {day}: {counts.new} nye, {counts.due_soon} med frist snart, {counts.overdue} over frist"
    body = "\n".join(
        [
            f"{centre_name}: henvisninger {day}",
            "",
            f"Nye det seneste døgn:                 {counts.new}",
            f"Frist inden for {hours.due_soon_hours:g} arbejdstimer:     {counts.due_soon}",
            f"Over frist:                           {counts.overdue}",
            "",
            f"Åbn indbakken: {inbox_url}",
            "",
            "Denne e-mail indeholder kun antal, ingen personoplysninger.",
            "Den sendes automatisk af henvis hver morgen til centrets fælles postkasse.",
            "",
        ]
    )
    return subject, body
