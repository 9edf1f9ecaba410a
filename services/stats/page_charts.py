"""The page's charts as inline SVG, drawn server-side from published rows: pure.

A withheld figure never gets a length or a position that could give its value away: a
withheld count is a dashed outline, a withheld rate a gap in its line.
"""

from __future__ import annotations

from markupsafe import Markup, escape

#: Danish / English labels of the figures.
LABELS = {
    "offered": "Tilbudt / Offered",
    "accepted": "Sagt ja / Accepted",
    "declined": "Sagt nej / Declined",
    "withdrawn": "Trukket tilbage / Withdrawn",
    "first_interviews": "Første samtale / First interview",
    "follow_ups": "Videre forløb / Follow-up",
    "acceptance_percent": "Andel ja / Acceptance",
    "first_interview_percent": "Første samtale / First-interview rate",
    "follow_up_percent": "Videre forløb / Follow-up rate",
    "days_to_first_contact_median": "Dage til første kontakt, median / Days to first contact, median",
    "days_to_first_contact_p90": "Dage til første kontakt, 90 % / Days to first contact, 90th pct.",
    "contacted_by_deadline_percent": "Kontaktet til tiden / Contacted by deadline",
}
FUNNEL_BARS = ("offered", "accepted", "first_interviews", "follow_ups")
BAR_COLOURS = {"offered": "#9db4c0", "accepted": "#2a6f97", "first_interviews": "#468faf", "follow_ups": "#014f86"}
TREND_LINES = {"acceptance_percent": "#2a6f97", "first_interview_percent": "#c05621", "follow_up_percent": "#2f855a"}

# Funnel bars: the longest bar, the height of one bar, the gap between bars, the room for labels.
BAR_WIDTH, BAR_HEIGHT, BAR_GAP, BAR_LABEL_WIDTH = 360, 14, 4, 40
WITHHELD_BAR_WIDTH = 12
# Trend chart: size and margins.
TREND_WIDTH, TREND_HEIGHT, TREND_LEFT, TREND_BOTTOM, TREND_TOP = 720, 260, 40, 40, 10
PLOT_WIDTH, PLOT_HEIGHT = TREND_WIDTH - TREND_LEFT - 10, TREND_HEIGHT - TREND_BOTTOM - TREND_TOP
PLOT_BASE = TREND_TOP + PLOT_HEIGHT


def funnel_svg(row: dict, scale_max: int, label: str) -> Markup:
    """Horizontal bars of one municipality's funnel; a withheld count is a dashed outline."""
    height = len(FUNNEL_BARS) * (BAR_HEIGHT + BAR_GAP)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{BAR_WIDTH + BAR_LABEL_WIDTH}" height="{height}" '
        f'role="img" aria-label="{escape(label)}">'
    ]
    for index, name in enumerate(FUNNEL_BARS):
        parts += _funnel_bar(name, row[name], index * (BAR_HEIGHT + BAR_GAP), scale_max)
    parts.append("</svg>")
    return Markup("".join(parts))


def _funnel_bar(name: str, value: int | str, y: int, scale_max: int) -> list[str]:
    """One bar and its figure; a withheld count (a string) gets no length that could give it away."""
    title = f"<title>{escape(LABELS[name])}: {escape(value)}</title>"
    if isinstance(value, int):
        bar = 0 if scale_max == 0 else round(BAR_WIDTH * value / scale_max, 1)
        rect = f'<rect x="0" y="{y}" width="{bar}" height="{BAR_HEIGHT}" fill="{BAR_COLOURS[name]}">{title}</rect>'
    else:
        bar = WITHHELD_BAR_WIDTH
        rect = (
            f'<rect x="0" y="{y}" width="{bar}" height="{BAR_HEIGHT}" fill="none" stroke="#666" '
            f'stroke-dasharray="2,2">{title}</rect>'
        )
    return [rect, f'<text x="{bar + 4}" y="{y + BAR_HEIGHT - 3}" font-size="11">{escape(str(value))}</text>']


def trend_svg(rows: list[dict]) -> Markup:
    """Monthly trend: accepted per month as bars, the three rates as lines (withheld points
    are left out, so a line has gaps rather than invented values)."""
    if not rows:
        return Markup('<p class="empty">Ingen data i perioden / No data in the period.</p>')
    step = PLOT_WIDTH / len(rows)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{TREND_WIDTH}" height="{TREND_HEIGHT}" role="img" '
        'aria-label="Månedlig udvikling / Monthly trend">',
        f'<line x1="{TREND_LEFT}" y1="{PLOT_BASE}" x2="{TREND_LEFT + PLOT_WIDTH}" y2="{PLOT_BASE}" stroke="#333"/>',
        f'<text x="2" y="{TREND_TOP + 8}" font-size="10">100 %</text>',
        f'<text x="2" y="{PLOT_BASE}" font-size="10">0</text>',
    ]
    parts += _month_bars(rows, step)
    for name, colour in TREND_LINES.items():
        for points in _line_segments(rows, name, step):
            parts.append(_segment_svg(points, colour))
    parts += _legend()
    parts.append("</svg>")
    return Markup("".join(parts))


def _month_bars(rows: list[dict], step: float) -> list[str]:
    """Per month: a bar of the accepted count (or the withheld label) and the month below."""
    counts = [row["accepted"] for row in rows if isinstance(row["accepted"], int)]
    max_count = max([*counts, 1])
    parts = []
    for index, row in enumerate(rows):
        x = TREND_LEFT + index * step
        value = row["accepted"]
        if isinstance(value, int) and value:
            bar_h = PLOT_HEIGHT * value / max_count * 0.9
            parts.append(
                f'<rect x="{x + step * 0.2:.1f}" y="{PLOT_BASE - bar_h:.1f}" width="{step * 0.6:.1f}" '
                f'height="{bar_h:.1f}" fill="#d9e4ec"><title>{escape(row["month"])}: '
                f"{escape(LABELS['accepted'])} {value}</title></rect>"
            )
        elif not isinstance(value, int):
            parts.append(f'<text x="{x + step * 0.3:.1f}" y="{PLOT_BASE - 4}" font-size="9">{escape(value)}</text>')
        parts.append(
            f'<text x="{x + step / 2:.1f}" y="{PLOT_BASE + 14}" font-size="9" text-anchor="middle">'
            f"{escape(row['month'][2:])}</text>"
        )
    return parts


def _line_segments(rows: list[dict], name: str, step: float) -> list[list[str]]:
    """The ``x,y`` points of one rate, split into runs at every withheld (None) month."""
    segments: list[list[str]] = []
    segment: list[str] = []
    for index, row in enumerate(rows):
        value = row[name]
        if value is None:
            if segment:
                segments.append(segment)
            segment = []
            continue
        x = TREND_LEFT + index * step + step / 2
        y = PLOT_BASE - PLOT_HEIGHT * value / 100
        segment.append(f"{x:.1f},{y:.1f}")
    if segment:
        segments.append(segment)
    return segments


def _segment_svg(points: list[str], colour: str) -> str:
    """A run of one point is a dot; longer runs are a polyline."""
    if len(points) == 1:
        cx, cy = points[0].split(",")
        return f'<circle cx="{cx}" cy="{cy}" r="3" fill="{colour}"/>'
    return f'<polyline points="{" ".join(points)}" fill="none" stroke="{colour}" stroke-width="2"/>'


def _legend() -> list[str]:
    y = TREND_HEIGHT - 8
    parts = []
    for index, (name, colour) in enumerate(TREND_LINES.items()):
        x = TREND_LEFT + index * 230
        parts.append(f'<rect x="{x}" y="{y - 8}" width="10" height="10" fill="{colour}"/>')
        parts.append(f'<text x="{x + 14}" y="{y}" font-size="10">{escape(LABELS[name])}</text>')
    return parts
