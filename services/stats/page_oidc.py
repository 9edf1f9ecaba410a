"""Researchers sign in to the statistics page through the identity provider (OpenID Connect).

With ``HENVIS_STATS_LOGIN=oidc`` the page's sign-in is the provider's (henvis.oidc: code flow
with PKCE, state, nonce, ID token, the required acr); a person with the ``researcher`` role
gets a session in a signed cookie (Starlette's session middleware) that the server ends after
its maximum age or idle time. Scripts keep using a researcher's bearer token.
"""

from __future__ import annotations

import time

import structlog
from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response

from henvis.oidc import Login, LoginRefused, authorize_params, complete_login, map_login
from henvis.services.stats.deps import SettingsDep
from henvis.services.stats.page_templates import login_page
from henvis.services.stats.settings import StatsSettings

router = APIRouter(include_in_schema=False)
log = structlog.get_logger("henvis.stats.page")

SESSION_KEY = "researcher"
#: What a refused sign-in's page says, by reason (status, message).
REFUSALS: dict[str, tuple[int, str]] = {
    # 401 like every other refused sign-in answer: the login was not proven (the list).
    "state_unknown_or_replayed": (
        401,
        "Login-forsøget var udløbt eller allerede brugt. / The sign-in expired or was used; start again.",
    ),
    "acr_insufficient": (
        403,
        "Dit login havde ikke det krævede sikringsniveau; log ind med to-faktor. / Your sign-in lacked the required assurance level; sign in with two factors.",
    ),
    "no_role": (403, "Du har ikke rollen som forsker i henvis. / You do not have the researcher role in henvis."),
    "provider_unreachable": (503, "Login-tjenesten svarer ikke. / The identity provider does not answer."),
}
DEFAULT_REFUSAL = (401, "Login-tjenestens svar kunne ikke godkendes. / The identity provider's answer was refused.")


def signed_in_researcher(request: Request, settings: StatsSettings) -> str | None:
    """The researcher of this browser's session, or None (none, expired or idle too long)."""
    data = request.session.get(SESSION_KEY) if "session" in request.scope else None
    if not isinstance(data, dict):
        return None
    now = time.time()
    if (
        now - data.get("issued", 0) > settings.session_max_age_seconds
        or now - data.get("seen", 0) > settings.session_idle_seconds
    ):
        request.session.pop(SESSION_KEY, None)
        return None
    request.session[SESSION_KEY] = data | {"seen": now}
    return str(data.get("user"))


def _callback_url(request: Request, settings: StatsSettings) -> str:
    return (settings.page_url or str(request.base_url)).rstrip("/") + "/login/callback"


@router.get("/login/oidc")
async def start_login(request: Request, settings: SettingsDep) -> Response:
    """To the provider's login page."""
    return await request.app.state.oidc.authorize_redirect(
        request, _callback_url(request, settings), **authorize_params(settings)
    )


@router.get("/login/callback")
async def finish_login(request: Request, settings: SettingsDep) -> Response:
    """The provider's answer: the page for a researcher, else the sign-in page saying why not."""
    answer = await complete_login(request.app.state.oidc, request)
    mapped: Login | LoginRefused = (
        answer if isinstance(answer, LoginRefused) else map_login(answer.claims, settings.oidc_mapping())
    )
    if isinstance(mapped, Login) and "researcher" not in mapped.roles:
        mapped = LoginRefused("no_role")
    if isinstance(mapped, LoginRefused):
        log.warning("login_refused", reason=mapped.reason, detail=mapped.detail or None)
        status, message = REFUSALS.get(mapped.reason, DEFAULT_REFUSAL)
        return login_page(request, status, message)
    assert not isinstance(answer, LoginRefused)
    now = time.time()
    request.session[SESSION_KEY] = {"user": mapped.username, "issued": now, "seen": now, "id_token": answer.id_token}
    log.info("login_oidc")
    return RedirectResponse("/", status_code=303)


async def sign_out(request: Request) -> Response:
    """End the session here and at the provider (RP-initiated logout with the ID token)."""
    data = request.session.pop(SESSION_KEY, None) if "session" in request.scope else None
    id_token = data.get("id_token") if isinstance(data, dict) else None
    if getattr(request.app.state, "oidc", None) is None or not id_token:
        return RedirectResponse("/", status_code=303)
    settings = request.app.state.settings
    after = settings.oidc_post_logout_url or (settings.page_url or str(request.base_url)).rstrip("/") + "/"
    response = await request.app.state.oidc.logout_redirect(
        request, post_logout_redirect_uri=after, id_token_hint=id_token
    )
    response.status_code = 303
    return response
