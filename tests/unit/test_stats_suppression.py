"""Small-cell protection (DESIGN §5): no published count of 1..threshold-1 persons, and no hidden
cell can be recovered by adding or subtracting published figures of the same table."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from henvis.services.stats import domain


@st.composite
def raw_funnels(draw) -> domain.RawFunnel:
    accepted = draw(st.integers(0, 40))
    declined = draw(st.integers(0, 60))
    first_interviews = draw(st.integers(0, accepted))
    return domain.RawFunnel(
        accepted=accepted,
        declined=declined,
        withdrawn=draw(st.integers(0, accepted)),
        first_interviews=first_interviews,
        follow_ups=draw(st.integers(0, first_interviews)),
        due_referrals=accepted,
        contacted_by_due=draw(st.integers(0, accepted)),
        days_histogram={day: draw(st.integers(0, 6)) for day in range(draw(st.integers(0, 4)))},
    )


tables = st.lists(raw_funnels(), min_size=1, max_size=12)
thresholds = st.integers(3, 6)


def _published(rows: list[dict], total: dict) -> dict[tuple, object]:
    cells = {}
    for index, row in enumerate(rows):
        for name in domain.COUNT_FIELDS:
            cells[(index, name)] = row[name]
    for name in domain.COUNT_FIELDS:
        cells[("total", name)] = total[name]
    return cells


def _lines(row_count: int) -> list[tuple[list[tuple], tuple]]:
    keys = [*range(row_count), "total"]
    lines = [([(key, "accepted"), (key, "declined")], (key, "offered")) for key in keys]
    for name in domain.COUNT_FIELDS:
        lines.append(([(index, name) for index in range(row_count)], ("total", name)))
    return lines


@settings(max_examples=300, deadline=None)
@given(groups=tables, threshold=thresholds)
def test_no_published_count_is_a_small_cell(groups, threshold):
    rows, total = domain.publish_table(list(enumerate(groups)), threshold)
    for value in _published(rows, total).values():
        assert value == f"<{threshold}" or not (0 < value < threshold)


@settings(max_examples=300, deadline=None)
@given(groups=tables, threshold=thresholds)
def test_no_hidden_cell_can_be_recovered_from_its_row_or_column_total(groups, threshold):
    rows, total = domain.publish_table(list(enumerate(groups)), threshold)
    cells = _published(rows, total)
    hidden = {cell for cell, value in cells.items() if isinstance(value, str)}
    for members, line_total in _lines(len(groups)):
        hidden_members = [cell for cell in members if cell in hidden]
        # the rule as stated: one hidden cell in a row/column only if its total is hidden too
        assert len(hidden_members) != 1 or line_total in hidden, (members, line_total)
        # and a hidden total is never the sum of members that are all shown
        assert not (line_total in hidden and not hidden_members), (members, line_total)


@settings(max_examples=200, deadline=None)
@given(groups=tables, threshold=thresholds)
def test_shown_figures_are_the_true_figures_and_rates_hide_with_their_counts(groups, threshold):
    rows, total = domain.publish_table(list(enumerate(groups)), threshold)
    whole = domain.RawFunnel()
    for raw in groups:
        whole.add(raw)
    for row, raw in [*zip(rows, groups, strict=False), (total, whole)]:
        for name in domain.COUNT_FIELDS:
            assert row[name] == f"<{threshold}" or row[name] == getattr(raw, name)
        for rate, (numerator, denominator) in domain.RATES.items():
            if isinstance(row[numerator], str) or isinstance(row[denominator], str):
                assert row[rate] is None and rate in row["suppressed"]
            elif getattr(raw, denominator):
                assert row[rate] == round(getattr(raw, numerator) / getattr(raw, denominator), 4)
        if 0 < raw.contacted < threshold:
            assert row["days_to_first_contact_median"] is None


@settings(max_examples=200, deadline=None)
@given(raw=raw_funnels(), threshold=thresholds)
def test_a_single_funnel_never_shows_a_small_cell_nor_lets_one_be_derived(raw, threshold):
    row = domain.publish_single(raw, threshold)
    for name in domain.COUNT_FIELDS:
        assert row[name] == f"<{threshold}" or not (0 < row[name] < threshold)
    hidden = [name for name in ("accepted", "declined", "offered") if isinstance(row[name], str)]
    assert len(hidden) != 1


def test_complementary_suppression_hides_the_smallest_other_cell_of_the_column():
    groups = [
        ("a", domain.RawFunnel(accepted=3, declined=20)),
        ("b", domain.RawFunnel(accepted=9, declined=20)),
        ("c", domain.RawFunnel(accepted=30, declined=20)),
    ]
    rows, total = domain.publish_table(groups, threshold=5)
    assert [row["accepted"] for row in rows] == ["<5", "<5", 30]
    assert total["accepted"] == 42
    # row a: offered 23 shown, declined 20 shown, accepted hidden -> declined or offered must hide too
    assert sum(isinstance(rows[0][name], str) for name in ("offered", "accepted", "declined")) >= 2


def test_zero_is_no_person_and_is_shown():
    row = domain.publish_single(domain.RawFunnel(accepted=0, declined=12), threshold=5)
    assert (row["accepted"], row["declined"], row["offered"]) == (0, 12, 12)
    assert row["acceptance_rate"] == 0.0
