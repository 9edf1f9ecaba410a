"""The raw (unsuppressed) figures of a group of referrals, and their day percentiles: pure.

A :class:`RawFunnel` never leaves the process as is; :mod:`.domain_publishing` turns it into the
public, suppressed figures.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from henvis.schemas.events import Decision
from henvis.services.stats.domain_referral import ReferralState

#: The additive counters of a :class:`RawFunnel` (everything but the histogram).
FUNNEL_COUNTERS: tuple[str, ...] = (
    "accepted",
    "declined",
    "withdrawn",
    "first_interviews",
    "follow_ups",
    "due_referrals",
    "contacted_by_due",
)


@dataclass
class RawFunnel:
    """Unsuppressed figures of one group of referrals. Never leaves the process as is."""

    accepted: int = 0
    declined: int = 0
    withdrawn: int = 0
    first_interviews: int = 0
    follow_ups: int = 0
    #: accepted, not withdrawn, with a contact deadline: the denominator of the on-time share
    due_referrals: int = 0
    #: of those, first contact attempt on or before contact_due_by
    contacted_by_due: int = 0
    #: days from decision to first contact attempt -> number of accepted referrals
    days_histogram: dict[int, int] = field(default_factory=dict)

    @property
    def offered(self) -> int:
        """Everyone asked: accepted + declined."""
        return self.accepted + self.declined

    @property
    def contacted(self) -> int:
        """Accepted referrals with a first contact attempt."""
        return sum(self.days_histogram.values())

    def add(self, other: RawFunnel) -> None:
        """Add ``other``'s figures to these (in place)."""
        for name in FUNNEL_COUNTERS:
            setattr(self, name, getattr(self, name) + getattr(other, name))
        for days, count in other.days_histogram.items():
            self.days_histogram[days] = self.days_histogram.get(days, 0) + count


def funnel_of(states: Iterable[ReferralState]) -> RawFunnel:
    """The raw figures of referrals in memory (the store computes the same in SQL)."""
    funnel = RawFunnel()
    for state in states:
        if state.decision == Decision.DECLINED:
            funnel.declined += 1
        if state.decision != Decision.ACCEPTED:
            continue  # outcomes whose fact has not arrived yet are not counted
        _count_accepted(funnel, state)
    return funnel


def _count_accepted(funnel: RawFunnel, state: ReferralState) -> None:
    funnel.accepted += 1
    funnel.withdrawn += state.withdrawn
    funnel.first_interviews += state.first_interview
    funnel.follow_ups += state.follow_up
    if not state.withdrawn and state.contact_due_by is not None:
        funnel.due_referrals += 1
        funnel.contacted_by_due += bool(state.contacted_by_due)
    days = state.days_to_first_contact
    if days is not None:
        funnel.days_histogram[days] = funnel.days_histogram.get(days, 0) + 1


def percentile(histogram: Mapping[int, int], fraction: float) -> int | None:
    """Nearest-rank percentile of a histogram of whole days: the smallest value with at least
    ``fraction`` of the observations at or below it (so the 90th of 1..10 is 9)."""
    total = sum(histogram.values())
    if total == 0:
        return None
    return _value_at_rank(histogram, max(1, math.ceil(fraction * total)))


def median(histogram: Mapping[int, int]) -> float | None:
    """The usual median (mean of the two middle values for an even count), in days."""
    total = sum(histogram.values())
    if total == 0:
        return None
    lower = _value_at_rank(histogram, (total + 1) // 2)
    upper = _value_at_rank(histogram, total // 2 + 1)
    middle = (lower + upper) / 2
    return int(middle) if middle.is_integer() else middle


def _value_at_rank(histogram: Mapping[int, int], rank: int) -> int:
    seen = 0
    for value in sorted(histogram):
        seen += histogram[value]
        if seen >= rank:
            return value
    raise AssertionError("rank beyond the histogram")
