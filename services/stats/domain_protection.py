"""One protection for every table the statistics can answer, decided together: pure.

Every count the API can be asked is a sum over a box of the cube *decision month ×
municipality × offence*: a period of whole months, one municipality (or the ones outside the
district, or all), one offence (or all). Protecting each response on its own lets differences
between responses reveal what one of them hides (issue 14). So the protection is decided once,
over the whole cube, and every response is derived from it:

1. **The release** is the three one-way partitions of the persons counted, by month, by
   municipality and by offence, each row with the six counts of :data:`STAGES`, and their
   common total. No cross-classified cell (a month of one municipality, a municipality's
   offence) is ever released.
2. **The total**: a count of the total with 1..threshold-1 persons is hidden, and then in every
   row of every partition (with offered, accepted and declined together, so none follows from
   ``offered = accepted + declined``).
3. **Rows**: a row with a count of 1..threshold-1 persons (among the counts not hidden
   everywhere) is hidden whole, all six counts; further whole rows are hidden until, for each
   count, the hidden rows of a partition hold no persons or at least threshold of them.
4. **Figures**: a response shows a count only when it follows from the shown release
   (:meth:`Protection.figure`): a sum of shown rows, or the total minus shown rows; anything
   else is withheld. So no combination of responses tells more than the release does.

Why no small count can be narrowed below the threshold: for any small figure, moving every
person of the partition's other hidden rows into a hidden row the figure covers (keeping each
person's other two dimensions) gives persons who match every shown figure and put at least
threshold persons into it; a count hidden everywhere can be raised by giving that status to
persons who are counted in shown counts of the stage above it (an acceptance, an interview),
or by adding persons when offered itself is hidden. The audit in
``tests/unit/test_stats_protection_audit.py`` checks this with linear programmes.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from henvis.services.stats.domain_funnel import RawFunnel
from henvis.services.stats.domain_suppression import COUNT_FIELDS, is_small

#: The counts protected together, in the order of a :data:`Counts` vector.
STAGES: tuple[str, ...] = COUNT_FIELDS
#: offered = accepted + declined: hidden together when one of them is hidden in the total.
LINKED: frozenset[str] = frozenset({"offered", "accepted", "declined"})
#: The dimensions of the cube, in the order of a :data:`FineKey`.
DIMENSIONS: tuple[str, ...] = ("month", "municipality", "offence")
MONTH, MUNICIPALITY, OFFENCE = range(len(DIMENSIONS))

#: One count per stage, in the order of :data:`STAGES`.
Counts = tuple[int, ...]
#: (decision month ``YYYY-MM``, municipality code or "", offence or ""): a cell of the cube.
FineKey = tuple[str, str, str]
#: The values of a dimension a figure covers; None for all of them.
Selection = frozenset[str] | None

ZERO: Counts = (0,) * len(STAGES)


@dataclass(frozen=True)
class Protection:
    """The protected release: the rows of each partition, which of them are hidden, the total,
    and which counts are hidden everywhere. Responses read their figures from here only."""

    threshold: int
    total: Counts
    #: per dimension: value -> counts of that row
    rows: tuple[Mapping[str, Counts], ...]
    #: per dimension: the rows hidden whole
    hidden_rows: tuple[frozenset[str], ...]
    #: counts hidden in the total and in every row
    hidden_stages: frozenset[str]

    def values(self, dimension: int) -> list[str]:
        """The values of ``dimension`` that have persons, sorted."""
        return sorted(self.rows[dimension])

    def figure(self, months: Selection, municipalities: Selection, offences: Selection) -> dict[str, int | None]:
        """The counts of a box that the shown release determines; None for the others."""
        selections = (months, municipalities, offences)
        specific = [
            (dimension, selection)
            for dimension, selection in enumerate(selections)
            if selection is not None and not selection.issuperset(self.rows[dimension])
        ]
        return {name: self._count(stage, specific) for stage, name in enumerate(STAGES)}

    def shown(self, dimension: int, value: str) -> bool:
        """Is the row ``value`` of ``dimension`` shown (for the utility figures)?"""
        return value not in self.hidden_rows[dimension]

    def _count(self, stage: int, specific: list[tuple[int, frozenset[str]]]) -> int | None:
        if STAGES[stage] in self.hidden_stages:
            return None
        if not specific:
            return self.total[stage]
        if len(specific) == 1:
            return self._one_way(stage, *specific[0])
        # A box crossing two dimensions is never released, except where one of its sides
        # is shown to have no such person at all.
        for dimension, selection in specific:
            if self._sum_of_shown(stage, dimension, selection) == 0:
                return 0
        return None

    def _one_way(self, stage: int, dimension: int, selection: frozenset[str]) -> int | None:
        inside = self._sum_of_shown(stage, dimension, selection)
        if inside is not None:
            return inside
        outside = self._sum_of_shown(stage, dimension, frozenset(self.rows[dimension].keys() - selection))
        return None if outside is None else self.total[stage] - outside

    def _sum_of_shown(self, stage: int, dimension: int, selection: Iterable[str]) -> int | None:
        """The sum over ``selection`` when all its rows are shown, else None."""
        rows, hidden = self.rows[dimension], self.hidden_rows[dimension]
        present = [value for value in selection if value in rows]
        if any(value in hidden for value in present):
            return None
        return sum(rows[value][stage] for value in present)


def counts_of(raw: RawFunnel) -> Counts:
    """The protected counts of a raw funnel, in the order of :data:`STAGES`."""
    return tuple(getattr(raw, name) for name in STAGES)


def protect(margins: Sequence[Mapping[str, Counts]], threshold: int) -> Protection:
    """The protected release of a cube given by its one-way ``margins`` (counts per month, per
    municipality, per offence; see :func:`margins_of`)."""
    rows = tuple({value: counts for value, counts in margin.items() if any(counts)} for margin in margins)
    total = _sum(rows[0].values())
    hidden_stages = {name for name, value in zip(STAGES, total, strict=True) if is_small(value, threshold)}
    if hidden_stages & LINKED:
        hidden_stages |= LINKED
    checked = [stage for stage, name in enumerate(STAGES) if name not in hidden_stages]
    hidden_rows = tuple(_hidden_rows(partition, checked, threshold) for partition in rows)
    return Protection(threshold, total, rows, hidden_rows, frozenset(hidden_stages))


def margins_of(cells: Mapping[FineKey, Counts]) -> tuple[dict[str, Counts], ...]:
    """The one-way margins of the cube ``cells`` (counts per month, municipality, offence)."""
    return tuple(_partition(cells, dimension) for dimension in range(len(DIMENSIONS)))


def _hidden_rows(rows: Mapping[str, Counts], stages: list[int], threshold: int) -> frozenset[str]:
    """Rows with a small count (primary), then the row with the fewest persons in a count whose
    hidden rows hold 1..threshold-1 persons, until none does (complementary)."""
    hidden = {value for value, counts in rows.items() if any(is_small(counts[stage], threshold) for stage in stages)}
    changed = True
    while changed:
        changed = False
        for stage in stages:
            if is_small(sum(rows[value][stage] for value in hidden), threshold):
                # The total of this count is shown and not small, so some shown row has persons.
                candidates = [value for value in rows if value not in hidden and rows[value][stage]]
                hidden.add(min(candidates, key=lambda value: (rows[value][stage], sum(rows[value]), value)))
                changed = True
    return frozenset(hidden)


def _partition(cells: Mapping[FineKey, Counts], dimension: int) -> dict[str, Counts]:
    grouped: dict[str, list[Counts]] = {}
    for key, counts in cells.items():
        grouped.setdefault(key[dimension], []).append(counts)
    return {value: _sum(parts) for value, parts in grouped.items()}


def _sum(parts: Iterable[Counts]) -> Counts:
    total = list(ZERO)
    for counts in parts:
        for stage, value in enumerate(counts):
            total[stage] += value
    return tuple(total)
