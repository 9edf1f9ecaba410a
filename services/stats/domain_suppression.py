"""Small-cell suppression with complementary suppression over a table's additive lines: pure.

A cell of 1..threshold-1 persons is hidden (primary); then further cells are hidden until no
hidden cell can be recovered by adding or subtracting shown cells of the same table.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass

#: Counts published for every group, in column order; the additive relations between them
#: are offered = accepted + declined (within a row) and each column sums to the total row.
COUNT_FIELDS: tuple[str, ...] = ("offered", "accepted", "declined", "withdrawn", "first_interviews", "follow_ups")

#: (row key, count name)
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
            if sum(cell in hidden for cell in (*line.members, line.total)) == 1:
                hidden.add(_complement(line, values, hidden))
                changed = True
    return hidden


def _complement(line: Line, values: Mapping[Cell, int], hidden: set[Cell]) -> Cell:
    shown_members = [cell for cell in line.members if cell not in hidden]
    if not shown_members:
        return line.total
    return min(shown_members, key=lambda cell: (values[cell] == 0, values[cell]))


def table_lines(row_keys: Sequence[Hashable], total_key: Hashable) -> list[Line]:
    """The additive relations of a funnel table: each row's offered = accepted + declined,
    and each count column sums to the total row."""
    lines = [Line(((key, "accepted"), (key, "declined")), (key, "offered")) for key in (*row_keys, total_key)]
    if row_keys:
        for name in COUNT_FIELDS:
            lines.append(Line(tuple((key, name) for key in row_keys), (total_key, name)))
    return lines
