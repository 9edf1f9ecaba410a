"""The audit of the statistics' protection, as an attacker with a linear-programming solver.

For random persons (hypothesis) the cube is protected once; then *every* figure the API could
answer on that cube (each period of whole months, each municipality, the ones outside the
district and all, each offence and all) is taken as published, and for a random set of
requested tables every withheld figure gets the interval it could lie in given everything
published, by linear programming (HiGHS). The public rules between the counts are
constraints of every cell: offered = accepted + declined, withdrawn <= accepted,
follow-ups <= first interviews <= accepted. A withheld count of 1..threshold-1 persons must
be able to reach the threshold, and no interval may exclude the true value.
"""

from __future__ import annotations

import sys
from collections import Counter
from itertools import product

import highspy
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from henvis.services.stats.domain_protection import STAGES, Protection, margins_of, protect

MONTHS = ("2021-04", "2021-05", "2021-06", "2021-07")
MUNICIPALITIES = ("657", "661", "665", "901", "902")
OUTSIDE = frozenset({"901", "902"})
OFFENCES = ("drink_driving", "drug_driving", "drink_and_drug_driving")
OFF, A, D, W, FI, FU = range(len(STAGES))

#: declined, then accepted x withdrawn or not x (no interview, interview, interview and follow-up)
KINDS: tuple[tuple[int, ...], ...] = (
    (OFF, D),
    *((OFF, A, *withdrawn, *outcomes) for withdrawn in ((), (W,)) for outcomes in ((), (FI,), (FI, FU))),
)

#: What the audit covered, printed at the end (run with -s): the closing note's figures.
AUDITED: Counter = Counter()

Cell = tuple[str, str, str]
Box = tuple[frozenset[str] | None, frozenset[str] | None, frozenset[str] | None]


def periods() -> list[frozenset[str] | None]:
    """Every period of whole months the API can be asked (on these months), and no filter."""
    ranges = [frozenset(MONTHS[first : last + 1]) for first in range(len(MONTHS)) for last in range(first, len(MONTHS))]
    return [None, *ranges]


def municipality_selections() -> list[frozenset[str] | None]:
    """One municipality, the ones outside the district (the tables' "other" row), or all."""
    return [None, OUTSIDE, *(frozenset({code}) for code in MUNICIPALITIES)]


def offence_selections() -> list[frozenset[str] | None]:
    return [None, *(frozenset({offence}) for offence in OFFENCES)]


ALL_BOXES: list[Box] = list(product(periods(), municipality_selections(), offence_selections()))

persons = st.lists(
    st.tuples(
        st.sampled_from(MONTHS), st.sampled_from(MUNICIPALITIES), st.sampled_from(OFFENCES), st.sampled_from(KINDS)
    ),
    max_size=90,
)


def cube_of(people: list[tuple[str, str, str, tuple[int, ...]]]) -> dict[Cell, tuple[int, ...]]:
    cells: dict[Cell, list[int]] = {}
    for month, municipality, offence, kind in people:
        counts = cells.setdefault((month, municipality, offence), [0] * len(STAGES))
        for stage in kind:
            counts[stage] += 1
    return {cell: tuple(counts) for cell, counts in cells.items()}


def true_value(cells: dict[Cell, tuple[int, ...]], box: Box, stage: int) -> int:
    return sum(counts[stage] for cell, counts in cells.items() if in_box(cell, box))


def in_box(cell: Cell, box: Box) -> bool:
    return all(selection is None or value in selection for value, selection in zip(cell, box, strict=True))


class Attacker:
    """Everything published as linear constraints over the unknown cells of the cube."""

    def __init__(self, published: list[tuple[Box, int, int]]):
        self.cells: list[Cell] = list(product(MONTHS, MUNICIPALITIES, OFFENCES))
        self.highs = highspy.Highs()
        self.highs.setOptionValue("output_flag", False)
        count = len(self.cells) * len(STAGES)
        self.highs.addVars(count, [0.0] * count, [highspy.kHighsInf] * count)
        for index in range(len(self.cells)):
            self._rule(0.0, 0.0, {OFF: 1.0, A: -1.0, D: -1.0}, index)  # offered = accepted + declined
            for small, large in ((W, A), (FI, A), (FU, FI)):
                self._rule(-highspy.kHighsInf, 0.0, {small: 1.0, large: -1.0}, index)
        for box, stage, value in published:
            columns = self.columns(box, stage)
            self.highs.addRow(value, value, len(columns), columns, [1.0] * len(columns))

    def _rule(self, lower: float, upper: float, coefficients: dict[int, float], index: int) -> None:
        columns = [index * len(STAGES) + stage for stage in coefficients]
        self.highs.addRow(lower, upper, len(columns), columns, list(coefficients.values()))

    def columns(self, box: Box, stage: int) -> list[int]:
        return [index * len(STAGES) + stage for index, cell in enumerate(self.cells) if in_box(cell, box)]

    def interval(self, box: Box, stage: int) -> tuple[float, float]:
        """The least and the greatest value of the figure consistent with everything published."""
        columns = self.columns(box, stage)
        count = len(self.cells) * len(STAGES)
        self.highs.changeColsCost(count, list(range(count)), [0.0] * count)
        self.highs.changeColsCost(len(columns), columns, [1.0] * len(columns))
        bounds = []
        for sense in (highspy.ObjSense.kMinimize, highspy.ObjSense.kMaximize):
            self.highs.changeObjectiveSense(sense)
            self.highs.run()
            status = self.highs.getModelStatus()
            if status == highspy.HighsModelStatus.kUnbounded:
                bounds.append(float("inf"))
                continue
            assert status == highspy.HighsModelStatus.kOptimal, self.highs.modelStatusToString(status)
            bounds.append(self.highs.getInfo().objective_function_value)
        return bounds[0], bounds[1]


def published_figures(protection: Protection) -> list[tuple[Box, int, int]]:
    published = []
    for box in ALL_BOXES:
        figure = protection.figure(*box)
        published += [(box, stage, value) for stage, value in enumerate(figure.values()) if value is not None]
    return published


@pytest.fixture(scope="module", autouse=True)
def report_the_audit_size():
    yield
    print(
        f"\naudit: {AUDITED['data sets']} data sets x {AUDITED['tables']} tables requested, "
        f"{AUDITED['hidden']} hidden figures checked ({AUDITED['small']} of them small)",
        file=sys.stderr,
    )


@settings(
    max_examples=150, deadline=None, derandomize=True, database=None, suppress_health_check=[HealthCheck.too_slow]
)
@given(people=persons, threshold=st.sampled_from([3, 5]), requested=st.lists(st.sampled_from(ALL_BOXES), max_size=24))
def test_no_combination_of_published_figures_narrows_a_hidden_figure_below_the_threshold(people, threshold, requested):
    cells = cube_of(people)
    protection = protect(margins_of(cells), threshold)
    published = published_figures(protection)
    for box, stage, value in published:
        assert value == true_value(cells, box, stage), "a shown figure is the true figure"
        assert not 0 < value < threshold, "no published count is small"
    attacker = Attacker(published)
    AUDITED["data sets"] += 1
    for box in dict.fromkeys(requested):
        AUDITED["tables"] += 1
        for stage, value in enumerate(protection.figure(*box).values()):
            if value is not None:
                continue
            truth = true_value(cells, box, stage)
            low, high = attacker.interval(box, stage)
            AUDITED["hidden"] += 1
            assert low - 1e-6 <= truth <= high + 1e-6
            if 0 < truth < threshold:
                AUDITED["small"] += 1
                assert high >= threshold - 1e-6, (box, STAGES[stage], truth, (low, high))
