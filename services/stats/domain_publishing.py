"""The public rows of the statistics: suppressed counts, rates and days to first contact: pure.

Every figure that leaves the service is built here, so no count of 1..threshold-1 persons
and no value that could be derived from published totals ever appears.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping, Sequence

from henvis.services.stats.domain_funnel import RawFunnel, median, percentile
from henvis.services.stats.domain_suppression import COUNT_FIELDS, Cell, is_small, suppress, table_lines

#: rate name -> (numerator count, denominator count)
RATES: dict[str, tuple[str, str]] = {
    "acceptance_rate": ("accepted", "offered"),
    "first_interview_rate": ("first_interviews", "accepted"),
    "follow_up_rate": ("follow_ups", "accepted"),
}

#: Row key of the total row in a table's cells.
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
    values = _count_cells([*groups, (TOTAL, total)])
    hidden = suppress(values, table_lines([key for key, _ in groups], TOTAL), threshold)
    rows = [_public_row(key, raw, values, hidden, threshold) for key, raw in groups]
    return rows, _public_row(TOTAL, total, values, hidden, threshold)


def publish_single(raw: RawFunnel, threshold: int) -> dict:
    """One funnel on its own (no rows): only the offered = accepted + declined relation."""
    values = _count_cells([(TOTAL, raw)])
    hidden = suppress(values, table_lines([], TOTAL), threshold)
    return _public_row(TOTAL, raw, values, hidden, threshold)


def publish_figures(figures: Mapping[str, int | None], raw: RawFunnel, threshold: int) -> dict:
    """A public row whose counts come from the protected release (:mod:`.domain_protection`):
    ``figures`` maps each count to its value or None (withheld). ``raw`` gives the days to
    first contact and the on-time share, shown only when the row's acceptances are shown.
    Same shape as a row of :func:`publish_table`."""
    values: dict[Cell, int] = {(TOTAL, name): figures[name] or 0 for name in COUNT_FIELDS}
    hidden: set[Cell] = {(TOTAL, name) for name in COUNT_FIELDS if figures[name] is None}
    # The days and the on-time share describe the accepted: withheld with them.
    return _public_row(TOTAL, raw, values, hidden, threshold, of_accepted=figures["accepted"] is not None)


def suppressed_label(threshold: int) -> str:
    """What a withheld count shows instead of its value, e.g. ``<5``."""
    return f"<{threshold}"


def round_half_up(value: float) -> int:
    """Whole percent as a report rounds it (67.2 -> 67, 31.5 -> 32), not banker's rounding."""
    return math.floor(value + 0.5 + 1e-9)


def _count_cells(groups: Sequence[tuple[Hashable, RawFunnel]]) -> dict[Cell, int]:
    return {(key, name): getattr(raw, name) for key, raw in groups for name in COUNT_FIELDS}


def _public_row(
    key: Hashable,
    raw: RawFunnel,
    values: Mapping[Cell, int],
    hidden: set[Cell],
    threshold: int,
    *,
    of_accepted: bool = True,
) -> dict:
    row: dict = {}
    suppressed: list[str] = []
    label = suppressed_label(threshold)
    for name in COUNT_FIELDS:
        if (key, name) in hidden:
            row[name] = label
            suppressed.append(name)
        else:
            row[name] = values[(key, name)]
    for rate, (numerator, denominator) in RATES.items():
        blocked = (key, numerator) in hidden or (key, denominator) in hidden
        _set_rate(row, rate, values[(key, numerator)], values[(key, denominator)], blocked, suppressed)
    _set_days_to_first_contact(row, raw, threshold, suppressed, of_accepted)
    blocked = not of_accepted or is_small(raw.contacted_by_due, threshold) or is_small(raw.due_referrals, threshold)
    _set_rate(row, "contacted_by_deadline_share", raw.contacted_by_due, raw.due_referrals, blocked, suppressed)
    row["suppressed"] = suppressed
    return row


def _set_days_to_first_contact(row: dict, raw: RawFunnel, threshold: int, suppressed: list[str], shown: bool) -> None:
    # A median of fewer than `threshold` persons describes individuals.
    if not shown or is_small(raw.contacted, threshold):
        row["days_to_first_contact_median"] = None
        row["days_to_first_contact_p90"] = None
        suppressed += ["days_to_first_contact_median", "days_to_first_contact_p90"]
    else:
        row["days_to_first_contact_median"] = median(raw.days_histogram)
        row["days_to_first_contact_p90"] = percentile(raw.days_histogram, 0.9)


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
