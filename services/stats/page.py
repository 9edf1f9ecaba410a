"""The researchers' page: a funnel per municipality and a monthly trend, drawn server-side.

Plain HTML with inline SVG, readable without JavaScript. It shows only the published
(suppressed) figures of the API. Sign-in: a bearer token in the ``Authorization`` header
(scripts), or the same token pasted once into the login form, which keeps it in an
HttpOnly, SameSite=Strict cookie for the browser session.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from fastapi import Depends, FastAPI, Form, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from markupsafe import Markup, escape

from henvis.auth import ApiClient, ClientRegistry
from henvis.schemas.events import Offence
from henvis.services.stats import domain

SESSION_COOKIE = "henvis_stats_session"
TEMPLATES = Jinja2Templates(directory=str(Path(__file__).parent / "templates"))

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
OFFENCE_LABELS = {
    "drink_driving": "Spirituskørsel / Drink driving",
    "drug_driving": "Narkokørsel / Drug driving",
    "drink_and_drug_driving": "Spiritus- og narkokørsel / Drink and drug driving",
}
FUNNEL_BARS = ("offered", "accepted", "first_interviews", "follow_ups")
BAR_COLOURS = {"offered": "#9db4c0", "accepted": "#2a6f97", "first_interviews": "#468faf", "follow_ups": "#014f86"}
TREND_LINES = {"acceptance_percent": "#2a6f97", "first_interview_percent": "#c05621", "follow_up_percent": "#2f855a"}


# ---------------------------------------------------------------- SVG, pure


def funnel_svg(row: dict, scale_max: int, label: str) -> Markup:
    """Horizontal bars of one municipality's funnel; a withheld count is a dashed outline."""
    width, bar_height, gap, label_width = 360, 14, 4, 40
    height = len(FUNNEL_BARS) * (bar_height + gap)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width + label_width}" height="{height}" '
        f'role="img" aria-label="{escape(label)}">'
    ]
    for index, name in enumerate(FUNNEL_BARS):
        y = index * (bar_height + gap)
        value = row[name]
        if isinstance(value, int):
            bar = 0 if scale_max == 0 else round(width * value / scale_max, 1)
            parts.append(
                f'<rect x="0" y="{y}" width="{bar}" height="{bar_height}" fill="{BAR_COLOURS[name]}">'
                f"<title>{escape(LABELS[name])}: {value}</title></rect>"
            )
            text = str(value)
        else:  # withheld: no length that could give the number away
            parts.append(
                f'<rect x="0" y="{y}" width="12" height="{bar_height}" fill="none" stroke="#666" stroke-dasharray="2,2">'
                f"<title>{escape(LABELS[name])}: {escape(value)}</title></rect>"
            )
            bar = 12
            text = str(value)
        parts.append(f'<text x="{bar + 4}" y="{y + bar_height - 3}" font-size="11">{escape(text)}</text>')
    parts.append("</svg>")
    return Markup("".join(parts))


def trend_svg(rows: list[dict]) -> Markup:
    """Monthly trend: accepted per month as bars, the three rates as lines (withheld points
    are left out, so a line has gaps rather than invented values)."""
    width, height, left, bottom, top = 720, 260, 40, 40, 10
    plot_w, plot_h = width - left - 10, height - bottom - top
    if not rows:
        return Markup('<p class="empty">Ingen data i perioden / No data in the period.</p>')
    step = plot_w / len(rows)
    counts = [row["accepted"] for row in rows if isinstance(row["accepted"], int)]
    max_count = max(counts + [1])
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img" '
        'aria-label="Månedlig udvikling / Monthly trend">',
        f'<line x1="{left}" y1="{top + plot_h}" x2="{left + plot_w}" y2="{top + plot_h}" stroke="#333"/>',
        f'<text x="2" y="{top + 8}" font-size="10">100 %</text>',
        f'<text x="2" y="{top + plot_h}" font-size="10">0</text>',
    ]
    for index, row in enumerate(rows):
        x = left + index * step
        value = row["accepted"]
        if isinstance(value, int) and value:
            bar_h = plot_h * value / max_count * 0.9
            parts.append(
                f'<rect x="{x + step * 0.2:.1f}" y="{top + plot_h - bar_h:.1f}" width="{step * 0.6:.1f}" '
                f'height="{bar_h:.1f}" fill="#d9e4ec"><title>{escape(row["month"])}: '
                f'{escape(LABELS["accepted"])} {value}</title></rect>'
            )
        elif not isinstance(value, int):
            parts.append(
                f'<text x="{x + step * 0.3:.1f}" y="{top + plot_h - 4}" font-size="9">{escape(value)}</text>'
            )
        parts.append(
            f'<text x="{x + step / 2:.1f}" y="{top + plot_h + 14}" font-size="9" text-anchor="middle">'
            f'{escape(row["month"][2:])}</text>'
        )
    for name, colour in TREND_LINES.items():
        segment: list[str] = []
        segments: list[list[str]] = []
        for index, row in enumerate(rows):
            value = row[name]
            if value is None:
                if segment:
                    segments.append(segment)
                segment = []
                continue
            x = left + index * step + step / 2
            y = top + plot_h - plot_h * value / 100
            segment.append(f"{x:.1f},{y:.1f}")
        if segment:
            segments.append(segment)
        for points in segments:
            if len(points) == 1:
                cx, cy = points[0].split(",")
                parts.append(f'<circle cx="{cx}" cy="{cy}" r="3" fill="{colour}"/>')
            else:
                parts.append(f'<polyline points="{" ".join(points)}" fill="none" stroke="{colour}" stroke-width="2"/>')
    legend_y = height - 8
    for index, (name, colour) in enumerate(TREND_LINES.items()):
        x = left + index * 230
        parts.append(f'<rect x="{x}" y="{legend_y - 8}" width="10" height="10" fill="{colour}"/>')
        parts.append(f'<text x="{x + 14}" y="{legend_y}" font-size="10">{escape(LABELS[name])}</text>')
    parts.append("</svg>")
    return Markup("".join(parts))


# ---------------------------------------------------------------- routes


def _token_from(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    if header.lower().startswith("bearer "):
        return header[7:].strip() or None
    return request.cookies.get(SESSION_COOKIE)


INVALID_TOKEN = "Ugyldig adgangsnøgle / Invalid token (researcher role required)."
WRONG_ROLE = (
    "Denne adgangsnøgle må ikke se statistikken; log ind med en forskers nøgle. / "
    "This credential's role may not see the statistics; log in with a researcher token."
)


def mount_page(app: FastAPI, reader, clients: ClientRegistry, *, secure_cookies: bool) -> None:
    app.mount("/static", StaticFiles(directory=str(Path(__file__).parent / "static")), name="stats-static")

    def authenticate(request: Request, token: str | None) -> ApiClient | None:
        client = clients.authenticate(token)
        if client is not None:
            request.state.client_name = client.name
        return client

    def client_or_none(request: Request) -> ApiClient | None:
        return authenticate(request, _token_from(request))

    def login_page(request: Request, status: int, message: str | None = None) -> HTMLResponse:
        return TEMPLATES.TemplateResponse(request, "login.html", {"message": message}, status_code=status)

    def refusal(request: Request, client: ApiClient | None, message: str | None = None) -> HTMLResponse | None:
        """401 for no or an unknown token, 403 for a real credential of another role."""
        if client is None:
            return login_page(request, 401, message)
        if client.role != "researcher":
            return login_page(request, 403, WRONG_ROLE)
        return None

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def page(request: Request, client: ApiClient | None = Depends(client_or_none)) -> Response:
        if (refused := refusal(request, client)) is not None:
            return refused
        from henvis.services.stats.api import parse_filters

        params = request.query_params
        raw_offence = params.get("offence") or None
        try:
            offence = Offence(raw_offence) if raw_offence else None
        except ValueError:
            raise RequestValidationError(
                [{"type": "enum", "loc": ("query", "offence"), "msg": "must be one of " + ", ".join(o.value for o in Offence), "input": None}]
            ) from None
        filters = parse_filters(
            _date_param(params, "from"), _date_param(params, "to"), params.get("municipality") or None, offence
        )
        overall = reader.funnel(filters)
        by_municipality = reader.by_municipality(filters)
        monthly = reader.monthly(filters)
        scale = max([row["offered"] for row in by_municipality["rows"] if isinstance(row["offered"], int)] + [1])
        municipality_rows = [
            {**row, "svg": funnel_svg(row, scale, f"{row['municipality']}")} for row in by_municipality["rows"]
        ]
        return TEMPLATES.TemplateResponse(
            request,
            "page.html",
            {
                "filters": filters,
                "overall": overall,
                "total": by_municipality["total"],
                "municipality_rows": municipality_rows,
                "trend": trend_svg(monthly["rows"]),
                "monthly_rows": monthly["rows"],
                "suppression": overall["suppression"],
                "labels": LABELS,
                "offence_labels": OFFENCE_LABELS,
                "centres": reader.registry.centres,
                "count_fields": domain.COUNT_FIELDS,
            },
        )

    @app.post("/login", include_in_schema=False)
    def login(request: Request, token: Annotated[str, Form(max_length=200)] = "") -> Response:
        client = authenticate(request, token.strip())
        if (refused := refusal(request, client, INVALID_TOKEN)) is not None:
            return refused
        response = RedirectResponse("/", status_code=303)
        response.set_cookie(
            SESSION_COOKIE, token.strip(), httponly=True, samesite="strict", secure=secure_cookies, path="/"
        )
        return response

    @app.post("/logout", include_in_schema=False)
    def logout() -> Response:
        response = RedirectResponse("/", status_code=303)
        response.delete_cookie(SESSION_COOKIE, path="/")
        return response


def _date_param(params, name: str):
    from datetime import date

    value = params.get(name) or None
    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise RequestValidationError(
            [{"type": "date_invalid", "loc": ("query", name), "msg": "must be a date, YYYY-MM-DD", "input": None}]
        ) from None
