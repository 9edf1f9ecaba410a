"""The rules of the one protection of every table, on small hand-made cubes (the audit in
test_stats_protection_audit.py checks the guarantee on random ones)."""

from __future__ import annotations

from henvis.services.stats.domain_protection import margins_of, protect

ALL = None


def counts(offered: int, accepted: int, withdrawn: int = 0, interviews: int = 0, follow_ups: int = 0):
    return (offered, accepted, offered - accepted, withdrawn, interviews, follow_ups)


def one(value: str) -> frozenset[str]:
    return frozenset({value})


CELLS = {
    ("2021-04", "657", "drink_driving"): counts(20, 10, 0, 8, 6),
    ("2021-05", "657", "drink_driving"): counts(15, 9, 0, 6, 5),
    ("2021-05", "665", "drug_driving"): counts(12, 7, 0, 6, 2),  # 2 follow-ups in Lemvig
    ("2021-06", "661", "drink_driving"): counts(30, 12, 0, 9, 6),
}


def test_a_row_with_a_small_count_is_withheld_whole_and_so_is_a_complement():
    protection = protect(margins_of(CELLS), threshold=5)
    lemvig = protection.figure(ALL, one("665"), ALL)
    assert set(lemvig.values()) == {None}  # offered 12 is withheld with the 2 follow-ups
    # The district's total minus the shown municipalities would give Lemvig: another
    # municipality is withheld too, the one with the fewest follow-ups.
    shown = [code for code in ("657", "661") if protection.figure(ALL, one(code), ALL)["follow_ups"] is not None]
    assert shown == ["657"]
    assert protection.figure(ALL, ALL, ALL) == {
        "offered": 77,
        "accepted": 38,
        "declined": 39,
        "withdrawn": 0,
        "first_interviews": 29,
        "follow_ups": 19,
    }


def test_a_figure_crossing_two_dimensions_is_withheld_unless_one_side_is_zero():
    protection = protect(margins_of(CELLS), threshold=5)
    assert protection.figure(one("2021-04"), one("657"), ALL)["offered"] is None  # 20, but never released
    assert protection.figure(one("2021-04"), one("657"), one("drink_driving"))["accepted"] is None
    assert protection.figure(one("2021-04"), ALL, one("drug_driving"))["offered"] is None
    # withdrawn is 0 everywhere, so any box of it is 0
    assert protection.figure(one("2021-04"), one("657"), ALL)["withdrawn"] == 0


def test_a_selection_is_a_sum_of_shown_rows_or_the_total_minus_shown_rows():
    protection = protect(margins_of(CELLS), threshold=5)
    assert protection.figure(frozenset({"2021-05", "2021-06"}), ALL, ALL)["offered"] == 27 + 30
    # Lemvig and Struer are withheld, but together they are the district minus Herning
    assert protection.figure(ALL, frozenset({"661", "665"}), ALL)["offered"] == 77 - 35


def test_a_small_count_of_the_total_is_withheld_in_every_row():
    cells = {**CELLS, ("2021-06", "661", "drink_driving"): counts(30, 12, 3, 9, 6)}
    protection = protect(margins_of(cells), threshold=5)
    assert protection.figure(ALL, ALL, ALL)["withdrawn"] is None
    assert protection.figure(ALL, one("657"), ALL)["withdrawn"] is None  # 0 there, but not shown
    assert protection.figure(ALL, one("657"), ALL)["accepted"] == 19


def test_the_threshold_is_the_callers():
    assert protect(margins_of(CELLS), threshold=2).figure(ALL, one("665"), ALL)["follow_ups"] == 2
    assert protect(margins_of(CELLS), threshold=3).figure(ALL, one("665"), ALL)["follow_ups"] is None
