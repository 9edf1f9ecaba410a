"""The researchers' page: a funnel per municipality and a monthly trend, drawn server-side.

Plain HTML with inline SVG, readable without JavaScript. It shows only the published
(suppressed) figures of the API. Sign-in: a bearer token in the ``Authorization`` header
(scripts), or the same token pasted once into the login form, which keeps it in an
HttpOnly, SameSite=Strict cookie for the browser session.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from henvis.auth import ApiClient, ClientRegistry
from henvis.services.stats import domain
from henvis.services.stats.deps import RESEARCHER_ROLES, ClientsDep, ReaderDep, SettingsDep
from henvis.services.stats.filters import page_filters
from henvis.services.stats.page_charts import LABELS, funnel_svg, trend_svg
from henvis.services.stats.page_oidc import sign_out, signed_in_researcher
from henvis.services.stats.page_templates import TEMPLATES, login_page
from henvis.services.stats.reader import StatsReader
from henvis.services.stats.store import Filters

SESSION_COOKIE = "henvis_stats_session"
STATIC_DIR = Path(__file__).parent / "static"

OFFENCE_LABELS = {
    "drink_driving": "Spirituskørsel / Drink driving",
    "drug_driving": "Narkokørsel / Drug driving",
    "drink_and_drug_driving": "Spiritus- og narkokørsel / Drink and drug driving",
}
INVALID_TOKEN = "Ugyldig adgangsnøgle / Invalid token (researcher role required)."
WRONG_ROLE = (
    "Denne adgangsnøgle må ikke se statistikken; log ind med en forskers nøgle. / "
    "This credential's role may not see the statistics; log in with a researcher token."
)

router = APIRouter(include_in_schema=False)


def page_client(request: Request, clients: ClientsDep) -> ApiClient | None:
    """The client of the ``Authorization`` header, else of the session cookie."""
    return _authenticate(request, clients, _token_from(request))


PageClient = Annotated[ApiClient | None, Depends(page_client)]


@router.get("/", response_class=HTMLResponse)
def page(request: Request, client: PageClient, reader: ReaderDep, settings: SettingsDep) -> Response:
    """The page for a researcher (token, or signed in at the provider); the login form (401/403) for anyone else."""
    if client is None and signed_in_researcher(request, settings) is not None:
        pass  # signed in through the identity provider
    elif (refused := _refusal(request, client)) is not None:
        return refused
    # Filters only after the credential: a stranger learns nothing from a 422.
    filters = page_filters(request.query_params)
    return TEMPLATES.TemplateResponse(request, "page.html", _page_context(reader, filters))


@router.post("/login")
def login(
    request: Request, clients: ClientsDep, settings: SettingsDep, token: Annotated[str, Form(max_length=200)] = ""
) -> Response:
    """Sign in with a researcher token, kept in a session cookie; the login form again otherwise."""
    token = token.strip()
    client = _authenticate(request, clients, token)
    if (refused := _refusal(request, client, INVALID_TOKEN)) is not None:
        return refused
    response = RedirectResponse("/", status_code=303)
    response.set_cookie(
        SESSION_COOKIE, token, httponly=True, samesite="strict", secure=settings.secure_cookies, path="/"
    )
    return response


@router.post("/logout")
async def logout(request: Request) -> Response:
    """Forget the session cookie; after a provider sign-in, end the provider's session too."""
    response = await sign_out(request)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


def _authenticate(request: Request, clients: ClientRegistry, token: str | None) -> ApiClient | None:
    """The client of ``token``, named in the request log; None for no or an unknown token."""
    client = clients.authenticate(token)
    if client is not None:
        request.state.client_name = client.name
    return client


def _token_from(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    if header.lower().startswith("bearer "):
        return header[7:].strip() or None
    return request.cookies.get(SESSION_COOKIE)


def _refusal(request: Request, client: ApiClient | None, message: str | None = None) -> HTMLResponse | None:
    """401 for no or an unknown token, 403 for a real credential of another role."""
    if client is None:
        return _login_page(request, 401, message)
    if client.role not in RESEARCHER_ROLES:
        return _login_page(request, 403, WRONG_ROLE)
    return None


def _login_page(request: Request, status: int, message: str | None = None) -> HTMLResponse:
    return login_page(request, status, message)


def _page_context(reader: StatsReader, filters: Filters) -> dict:
    """The published figures the page shows, with a funnel chart per municipality."""
    protection = reader.protection()  # one read of the margins for the three tables
    overall = reader.funnel(filters, protection)
    by_municipality = reader.by_municipality(filters, protection)
    monthly = reader.monthly(filters, protection)
    rows = by_municipality["rows"]
    # One scale for every municipality, so bar lengths compare across the page.
    scale = max([row["offered"] for row in rows if isinstance(row["offered"], int)] + [1])
    return {
        "filters": filters,
        "overall": overall,
        "total": by_municipality["total"],
        "municipality_rows": [{**row, "svg": funnel_svg(row, scale, row["municipality"])} for row in rows],
        "trend": trend_svg(monthly["rows"]),
        "monthly_rows": monthly["rows"],
        "suppression": overall["suppression"],
        "labels": LABELS,
        "offence_labels": OFFENCE_LABELS,
        "centres": reader.registry.centres,
        "count_fields": domain.COUNT_FIELDS,
    }
