"""How one referral's change moves the daily aggregate rows the funnel queries read: pure.

The store keeps counters per (decision day, municipality, offence) so a query reads a few
thousand aggregate rows instead of every referral; :func:`aggregate_changes` gives the
deltas to apply in the same transaction as the referral's own change.
"""

from __future__ import annotations

from datetime import date

from henvis.schemas.events import Decision
from henvis.services.stats.domain_funnel import FUNNEL_COUNTERS, funnel_of
from henvis.services.stats.domain_referral import ReferralState

#: Counters kept per aggregate row: the additive counters of a funnel.
AGGREGATE_COUNTERS: tuple[str, ...] = FUNNEL_COUNTERS

#: (decided_on, municipality_code or "", offence or ""): "" because a key column cannot be NULL
AggregateKey = tuple[date, str, str]
CounterDeltas = dict[AggregateKey, dict[str, int]]
#: (aggregate row, days to first contact) -> change in the number of referrals
DaysDeltas = dict[tuple[AggregateKey, int], int]


def aggregate_key(state: ReferralState) -> AggregateKey | None:
    """The aggregate row ``state`` counts in; None before its decision is known."""
    if state.decision is None or state.decided_on is None:
        return None
    return (state.decided_on, state.municipality_code or "", str(state.offence) if state.offence else "")


def contribution(state: ReferralState | None) -> dict[str, int]:
    """What one referral adds to its aggregate row (same rules as :func:`funnel_of`)."""
    if state is None or aggregate_key(state) is None:
        return {}
    single = funnel_of([state])
    return {name: getattr(single, name) for name in AGGREGATE_COUNTERS if getattr(single, name)}


def aggregate_changes(old: ReferralState | None, new: ReferralState) -> tuple[CounterDeltas, DaysDeltas]:
    """How the aggregates change when a referral goes from ``old`` to ``new``: counter deltas
    per aggregate row, and days-to-first-contact deltas per (row, days). Zero deltas omitted."""
    counters: CounterDeltas = {}
    days: DaysDeltas = {}
    for state, sign in ((old, -1), (new, +1)):
        if state is None:
            continue
        key = aggregate_key(state)
        if key is None:
            continue
        row = counters.setdefault(key, {})
        for name, value in contribution(state).items():
            row[name] = row.get(name, 0) + sign * value
        if state.decision == Decision.ACCEPTED and state.days_to_first_contact is not None:
            days_key = (key, state.days_to_first_contact)
            days[days_key] = days.get(days_key, 0) + sign
    return _without_zeros(counters), {key: delta for key, delta in days.items() if delta}


def _without_zeros(counters: CounterDeltas) -> CounterDeltas:
    rows = {key: {name: delta for name, delta in row.items() if delta} for key, row in counters.items()}
    return {key: row for key, row in rows.items() if row}
