"""The figures researchers get (DESIGN §5): pure rules, no I/O.

Three parts:

* the state of one referral as facts and outcomes arrive (in any order, possibly twice):
  :func:`apply_fact`, :func:`apply_outcome`;
* the raw figures of a group of referrals (:class:`RawFunnel`), and percentiles;
* publishing: small-cell suppression with complementary suppression (:func:`suppress`) and
  the public rows (:func:`publish_table`) in which no count of 1..threshold-1 persons and no
  value that could be derived from published totals ever appears.

The definitions are documented for researchers in ``docs/researchers-guide.md``.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta

from henvis.deadlines import local_date

# ---------------------------------------------------------------- one referral

#: Outcomes that show the centre tried to reach the person: the earliest of them is the
#: "first contact attempt". ``unreachable`` and ``declined_by_person`` can only be recorded
#: after the centre has tried, so they count as an attempt when nothing earlier was recorded.
CONTACT_OUTCOMES = frozenset(
    {
        "contact_attempted",
        "contacted",
        "first_interview_held",
        "follow_up_accepted",
        "unreachable",
        "declined_by_person",
    }
)


@dataclass(frozen=True)
class ReferralState:
    """What the statistics know about one referral: pseudonymous by construction."""

    referral_id: str
    decision: str | None = None  # "accepted" / "declined"; None until the decision fact arrives
    withdrawn: bool = False
    offence: str | None = None
    municipality_code: str | None = None
    centre: str | None = None
    decided_on: date | None = None
    contact_due_by: date | None = None
    first_contact_at: datetime | None = None
    first_interview: bool = False
    follow_up: bool = False

    @property
    def decided_month(self) -> str | None:
        return self.decided_on.strftime("%Y-%m") if self.decided_on else None

    @property
    def first_contact_on(self) -> date | None:
        """The Danish calendar day of the first contact attempt (deadlines are Danish days)."""
        return local_date(self.first_contact_at) if self.first_contact_at else None

    @property
    def days_to_first_contact(self) -> int | None:
        if self.decided_on is None or self.first_contact_on is None:
            return None
        # A caseworker may record a call dated before the decision by mistake; never negative.
        return max(0, (self.first_contact_on - self.decided_on).days)

    @property
    def contacted_by_due(self) -> bool | None:
        """Was the first attempt on or before contact_due_by? None when there is no deadline."""
        if self.contact_due_by is None:
            return None
        return self.first_contact_on is not None and self.first_contact_on <= self.contact_due_by


def apply_fact(
    state: ReferralState | None,
    *,
    referral_id: str,
    decision: str,
    offence: str | None,
    municipality_code: str | None,
    centre: str | None,
    decided_on: date,
    contact_due_by: date | None,
) -> ReferralState:
    """The state after a router fact. Order-independent: a withdrawal may come first."""
    state = state or ReferralState(referral_id=referral_id)
    if decision == "withdrawn":
        # A withdrawal does not undo the yes: accepted counts every yes (DESIGN §5), and
        # withdrawn referrals are counted separately. Its decided_on is the withdrawal day,
        # so it never replaces the decision date.
        return replace(
            state,
            withdrawn=True,
            offence=state.offence or offence,
            municipality_code=state.municipality_code or municipality_code,
            centre=state.centre or centre,
        )
    return replace(
        state,
        decision=decision,
        offence=offence,
        municipality_code=municipality_code,
        centre=centre,
        decided_on=decided_on,
        contact_due_by=contact_due_by if decision == "accepted" else None,
    )


def apply_outcome(state: ReferralState | None, *, referral_id: str, outcome: str, occurred_at: datetime) -> ReferralState:
    """The state after a centre outcome; may arrive before the referral's fact."""
    state = state or ReferralState(referral_id=referral_id)
    changes: dict = {}
    if outcome in CONTACT_OUTCOMES and (state.first_contact_at is None or occurred_at < state.first_contact_at):
        changes["first_contact_at"] = occurred_at
    if outcome == "first_interview_held":
        changes["first_interview"] = True
    if outcome == "follow_up_accepted":
        # Saying yes to more than the first conversation implies that conversation was held.
        changes["follow_up"] = True
        changes["first_interview"] = True
    return replace(state, **changes) if changes else state


# ---------------------------------------------------------------- raw figures of a group


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
        return self.accepted + self.declined

    @property
    def contacted(self) -> int:
        return sum(self.days_histogram.values())

    def add(self, other: "RawFunnel") -> None:
        for name in ("accepted", "declined", "withdrawn", "first_interviews", "follow_ups", "due_referrals", "contacted_by_due"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        for days, count in other.days_histogram.items():
            self.days_histogram[days] = self.days_histogram.get(days, 0) + count


def funnel_of(states: Iterable[ReferralState]) -> RawFunnel:
    """The raw figures of referrals in memory (the store computes the same in SQL)."""
    funnel = RawFunnel()
    for state in states:
        if state.decision == "declined":
            funnel.declined += 1
        if state.decision != "accepted":
            continue  # outcomes whose fact has not arrived yet are not counted
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
    return funnel


#: Counters kept per (decision day, municipality, offence) so a query reads a few thousand
#: aggregate rows instead of every referral.
AGGREGATE_COUNTERS: tuple[str, ...] = (
    "accepted", "declined", "withdrawn", "first_interviews", "follow_ups", "due_referrals", "contacted_by_due",
)

#: (decided_on, municipality_code or "", offence or ""): "" because a key column cannot be NULL
AggregateKey = tuple[date, str, str]


def aggregate_key(state: ReferralState) -> AggregateKey | None:
    if state.decision is None or state.decided_on is None:
        return None  # not counted before its decision is known
    return (state.decided_on, state.municipality_code or "", state.offence or "")


def contribution(state: ReferralState | None) -> dict[str, int]:
    """What one referral adds to its aggregate row (same rules as :func:`funnel_of`)."""
    if state is None or aggregate_key(state) is None:
        return {}
    single = funnel_of([state])
    return {name: getattr(single, name) for name in AGGREGATE_COUNTERS if getattr(single, name)}


def aggregate_changes(
    old: ReferralState | None, new: ReferralState
) -> tuple[dict[AggregateKey, dict[str, int]], dict[tuple[AggregateKey, int], int]]:
    """How the aggregates change when a referral goes from ``old`` to ``new``: counter deltas
    per aggregate row, and days-to-first-contact deltas per (row, days). Zero deltas omitted."""
    counters: dict[AggregateKey, dict[str, int]] = {}
    days: dict[tuple[AggregateKey, int], int] = {}
    for state, sign in ((old, -1), (new, +1)):
        if state is None:
            continue
        key = aggregate_key(state)
        if key is None:
            continue
        row = counters.setdefault(key, {})
        for name, value in contribution(state).items():
            row[name] = row.get(name, 0) + sign * value
        if state.decision == "accepted" and state.days_to_first_contact is not None:
            days_key = (key, state.days_to_first_contact)
            days[days_key] = days.get(days_key, 0) + sign
    counters = {key: {n: v for n, v in row.items() if v} for key, row in counters.items()}
    return {key: row for key, row in counters.items() if row}, {key: value for key, value in days.items() if value}


def percentile(histogram: Mapping[int, int], fraction: float) -> int | None:
    """Nearest-rank percentile of a histogram of whole days: the smallest value with at least
    ``fraction`` of the observations at or below it (so the 90th of 1..10 is 9)."""
    total = sum(histogram.values())
    if total == 0:
        return None
    rank = max(1, math.ceil(fraction * total))
    seen = 0
    for value in sorted(histogram):
        seen += histogram[value]
        if seen >= rank:
            return value
    raise AssertionError("unreachable")


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


# ---------------------------------------------------------------- suppression

#: Counts published for every group, in column order; the additive relations between them
#: are offered = accepted + declined (within a row) and each column sums to the total row.
COUNT_FIELDS: tuple[str, ...] = ("offered", "accepted", "declined", "withdrawn", "first_interviews", "follow_ups")

#: rate name -> (numerator count, denominator count)
RATES: dict[str, tuple[str, str]] = {
    "acceptance_rate": ("accepted", "offered"),
    "first_interview_rate": ("first_interviews", "accepted"),
    "follow_up_rate": ("follow_ups", "accepted"),
}

Cell = tuple[Hashable, str]


@dataclass(frozen=True)
class Line:
    """Cells whose values add up to ``total``: publishing all but one of them and the total
    would reveal the missing one by subtraction."""

    members: tuple[Cell, ...]
    total: Cell


def is_small(value: int, threshold: int) -> bool:
    """A cell built from 1..threshold-1 persons. Zero is no person and is shown."""
    return 0 < value < threshold


def suppress(values: Mapping[Cell, int], lines: Sequence[Line], threshold: int) -> set[Cell]:
    """Cells to hide: every small cell (primary), plus complementary cells until no line has
    exactly one hidden cell among its members and its total.

    One hidden member with a shown total is found by subtraction; a hidden total whose
    members are all shown is found by addition. The complementary cell chosen is the
    line's smallest shown member that is not zero (a hidden zero protects little when the
    zero can be known otherwise), else a zero member, else (no other member) its total.
    """
    hidden = {cell for cell, value in values.items() if is_small(value, threshold)}
    changed = True
    while changed:
        changed = False
        for line in lines:
            cells = (*line.members, line.total)
            if sum(cell in hidden for cell in cells) != 1:
                continue
            shown_members = [cell for cell in line.members if cell not in hidden]
            if shown_members:
                choice = min(shown_members, key=lambda cell: (values[cell] == 0, values[cell]))
            else:
                choice = line.total
            hidden.add(choice)
            changed = True
    return hidden


def table_lines(row_keys: Sequence[Hashable], total_key: Hashable) -> list[Line]:
    """The additive relations of a funnel table: each row's offered = accepted + declined,
    and each count column sums to the total row."""
    lines = [Line(((key, "accepted"), (key, "declined")), (key, "offered")) for key in (*row_keys, total_key)]
    if row_keys:
        for name in COUNT_FIELDS:
            lines.append(Line(tuple((key, name) for key in row_keys), (total_key, name)))
    return lines


TOTAL = "__total__"


def publish_table(groups: Sequence[tuple[Hashable, RawFunnel]], threshold: int) -> tuple[list[dict], dict]:
    """Public rows and total row for ``groups`` (row key, raw figures), suppressed.

    Returns ``(rows, total)``; each is a dict of counts (int or ``"<threshold"``), rates
    (a fraction, a whole percent, or None when suppressed), days to first contact and the
    on-time share, plus ``suppressed``: the names of the hidden figures.
    """
    total = RawFunnel()
    for _, raw in groups:
        total.add(raw)
    row_keys = [key for key, _ in groups]
    values: dict[Cell, int] = {}
    for key, raw in (*groups, (TOTAL, total)):
        for name in COUNT_FIELDS:
            values[(key, name)] = getattr(raw, name)
    hidden = suppress(values, table_lines(row_keys, TOTAL), threshold)
    rows = [_public_row(key, raw, values, hidden, threshold) for key, raw in groups]
    return rows, _public_row(TOTAL, total, values, hidden, threshold)


def publish_single(raw: RawFunnel, threshold: int) -> dict:
    """One funnel on its own (no rows): only the offered = accepted + declined relation."""
    values = {(TOTAL, name): getattr(raw, name) for name in COUNT_FIELDS}
    hidden = suppress(values, table_lines([], TOTAL), threshold)
    return _public_row(TOTAL, raw, values, hidden, threshold)


def suppressed_label(threshold: int) -> str:
    return f"<{threshold}"


def _public_row(key: Hashable, raw: RawFunnel, values: Mapping[Cell, int], hidden: set[Cell], threshold: int) -> dict:
    label = suppressed_label(threshold)
    row: dict = {}
    suppressed: list[str] = []
    for name in COUNT_FIELDS:
        if (key, name) in hidden:
            row[name] = label
            suppressed.append(name)
        else:
            row[name] = values[(key, name)]
    for rate, (numerator, denominator) in RATES.items():
        blocked = (key, numerator) in hidden or (key, denominator) in hidden
        _set_rate(row, rate, values[(key, numerator)], values[(key, denominator)], blocked, suppressed)

    # Days to first contact: a median of fewer than `threshold` persons describes individuals.
    contacted = raw.contacted
    if is_small(contacted, threshold):
        row["days_to_first_contact_median"] = None
        row["days_to_first_contact_p90"] = None
        suppressed += ["days_to_first_contact_median", "days_to_first_contact_p90"]
    else:
        row["days_to_first_contact_median"] = median(raw.days_histogram)
        row["days_to_first_contact_p90"] = percentile(raw.days_histogram, 0.9)
    blocked = is_small(raw.contacted_by_due, threshold) or is_small(raw.due_referrals, threshold)
    _set_rate(row, "contacted_by_deadline_share", raw.contacted_by_due, raw.due_referrals, blocked, suppressed)
    row["suppressed"] = suppressed
    return row


def _set_rate(row: dict, name: str, numerator: int, denominator: int, blocked: bool, suppressed: list[str]) -> None:
    percent_name = name.removesuffix("_rate").removesuffix("_share") + "_percent"
    if blocked:
        row[name] = None
        row[percent_name] = None
        suppressed += [name, percent_name]
    elif denominator == 0:
        row[name] = None  # no one to divide by: not a rate, nothing hidden
        row[percent_name] = None
    else:
        fraction = numerator / denominator
        row[name] = round(fraction, 4)
        row[percent_name] = round_half_up(100 * fraction)


def round_half_up(value: float) -> int:
    """Whole percent as a report rounds it (67.2 -> 67, 31.5 -> 32), not banker's rounding."""
    return int(math.floor(value + 0.5 + 1e-9))


# ---------------------------------------------------------------- period helpers


def month_start(day: date) -> date:
    return day.replace(day=1)


def month_end(day: date) -> date:
    following = day.replace(year=day.year + 1, month=1, day=1) if day.month == 12 else day.replace(month=day.month + 1, day=1)
    return following - timedelta(days=1)


def months_between(first: date, last: date) -> list[str]:
    """Every ``YYYY-MM`` from the month of ``first`` to the month of ``last``, inclusive."""
    months = []
    year, month = first.year, first.month
    while (year, month) <= (last.year, last.month):
        months.append(f"{year:04d}-{month:02d}")
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    return months
