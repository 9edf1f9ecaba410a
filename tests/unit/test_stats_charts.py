"""The page's SVG charts never draw a withheld figure as a length or a point."""

from __future__ import annotations

import re

from henvis.services.stats.page_charts import TREND_LINES, funnel_svg, trend_svg


def test_a_withheld_count_is_a_dashed_outline_of_fixed_width():
    svg = funnel_svg({"offered": 40, "accepted": "<5", "first_interviews": 0, "follow_ups": 0}, 40, "Herning")
    bars = re.findall(r"<rect [^>]*>", svg)
    assert 'width="360.0"' in bars[0]  # offered: the full scale
    assert 'width="12"' in bars[1] and 'stroke-dasharray="2,2"' in bars[1]
    assert 'width="0.0"' in bars[2]  # a real zero is an empty bar, not a withheld one


def test_a_withheld_rate_breaks_its_trend_line_instead_of_bridging_it():
    def month(name: str, acceptance: int | None) -> dict:
        return {
            "month": name,
            "accepted": 10,
            "acceptance_percent": acceptance,
            "first_interview_percent": 50,
            "follow_up_percent": None,
        }

    svg = trend_svg([month("2021-05", 60), month("2021-06", None), month("2021-07", 70)])
    acceptance_colour = TREND_LINES["acceptance_percent"]
    assert svg.count('<circle cx="') == 2 and f'stroke="{acceptance_colour}"' not in svg
    assert svg.count("<polyline") == 1  # first-interview rate, all three months


def test_no_months_is_a_sentence_not_an_empty_chart():
    assert "<svg" not in trend_svg([])
