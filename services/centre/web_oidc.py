"""Caseworkers sign in through the municipality's identity provider (OpenID Connect).

``/login/oidc`` sends the browser to the provider (authorization code, PKCE S256, ``state``,
``nonce`` and the required ``acr`` asked for); ``/login/callback`` takes the code back,
lets authlib check state, nonce and the ID token, then maps the claims to a centre
(henvis.oidc). Every refusal is a page that says why and a log line with the reason, never
with a code or a token.
"""

from __future__ import annotations

import httpx
import structlog
from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from henvis.oidc import Login, LoginRefused, authorize_params, caseworker_centre, complete_login, map_login
from henvis.services.centre import auth
from henvis.services.centre.deps import PagesDep, StateDep
from henvis.services.centre.state import CentreState
from henvis.services.centre.store_access_log import log_access
from henvis.services.centre.web_pages import Pages

router = APIRouter(include_in_schema=False)
log = structlog.get_logger("henvis.centre.web")

#: What a refused login's page says, by reason (status, message).
_REFUSALS: dict[str, tuple[int, str]] = {
    # 401 like every other refused sign-in answer: the login was not proven (the list).
    "state_unknown_or_replayed": (
        401,
        "Login-forsøget kunne ikke genkendes (det var udløbt eller allerede brugt). Start forfra med Log ind.",
    ),
    "provider_error": (401, "Login-tjenesten afviste login. Prøv igen, eller kontakt jeres administrator."),
    "id_token_invalid": (401, "Svaret fra login-tjenesten kunne ikke godkendes. Start forfra med Log ind."),
    "id_token_missing": (401, "Svaret fra login-tjenesten kunne ikke godkendes. Start forfra med Log ind."),
    "provider_unreachable": (503, "Login-tjenesten svarer ikke lige nu. Prøv igen om lidt."),
    "no_username": (403, "Login-tjenesten oplyste ikke, hvem du er."),
    "no_role": (403, "Du har ikke rollen som sagsbehandler i henvis. Kontakt jeres administrator."),
    "no_centre": (403, "Din bruger er ikke knyttet til et rusmiddelcenter. Kontakt jeres administrator."),
    "centre_not_served": (403, "Dit center betjenes ikke af denne installation."),
}


def _acr_refusal(required: str | None, given: str) -> tuple[int, str]:
    return (
        403,
        f"Dit login havde sikringsniveau »{given}«, men henvis kræver »{required}« (NSIS). "
        "Log ind igen med to-faktor (fx MitID), eller kontakt jeres administrator.",
    )


def _callback_url(request: Request, state: CentreState) -> str:
    base = state.settings.inbox_url or str(request.base_url)
    return base.rstrip("/") + "/login/callback"


def _refused(pages: Pages, refusal: LoginRefused, status_and_message: tuple[int, str], **log_fields) -> HTMLResponse:
    log.warning("login_refused", reason=refusal.reason, detail=refusal.detail or None, **log_fields)
    status_code, message = status_and_message
    return pages.render(
        "login_oidc.html", auth.Session.anonymous(), status_code=status_code, error=message, signed_out=False
    )


@router.get("/login/oidc")
async def start_login(request: Request, state: StateDep) -> Response:
    """To the provider's login page."""
    try:
        return await state.oidc.authorize_redirect(
            request, _callback_url(request, state), **authorize_params(state.settings)
        )
    except httpx.HTTPError as exc:
        log.warning("login_provider_unreachable", error=type(exc).__name__)
        return HTMLResponse(_REFUSALS["provider_unreachable"][1], status_code=503)


@router.get("/login/callback", response_class=HTMLResponse)
async def finish_login(request: Request, state: StateDep, pages: PagesDep):
    """The provider's answer: into the inbox, or a page that says why not."""
    answer = await complete_login(state.oidc, request)
    if isinstance(answer, LoginRefused):
        return _refused(pages, answer, _REFUSALS[answer.reason])
    mapped = map_login(answer.claims, state.settings.oidc_mapping())
    if isinstance(mapped, Login) and "auditor" in mapped.roles and "caseworker" not in mapped.roles:
        return await _auditor_signed_in(state, pages, mapped, answer.id_token)
    centre = caseworker_centre(mapped, state.centres) if not isinstance(mapped, LoginRefused) else mapped
    if isinstance(centre, LoginRefused):
        if centre.reason == "acr_insufficient":
            required = state.settings.oidc_required_acr
            return _refused(pages, centre, _acr_refusal(required, centre.detail), required_acr=required)
        return _refused(pages, centre, _REFUSALS[centre.reason])
    assert not isinstance(mapped, LoginRefused)
    await run_in_threadpool(
        log_access,
        state.engine,
        actor=mapped.username,
        actor_kind="user",
        centre=centre,
        referral_id=None,
        action="login",
    )
    log.info("login_oidc", centre=centre)
    new_session = auth.Session.for_user(mapped.username, centre, id_token=answer.id_token)
    return pages.with_session(RedirectResponse("/indbakke", status_code=303), new_session)


async def _auditor_signed_in(state: CentreState, pages: Pages, login: Login, id_token: str | None) -> Response:
    """An auditor: a session for the access log only (no centre, so no inbox)."""
    await run_in_threadpool(
        log_access, state.engine, actor=login.username, actor_kind="user", centre=None, referral_id=None, action="login"
    )
    log.info("login_oidc", role="auditor")
    return pages.with_session(
        RedirectResponse("/adgangslog", status_code=303), auth.for_auditor(login.username, id_token)
    )
