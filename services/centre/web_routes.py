"""The caseworkers' web page: server-rendered Danish HTML, no JavaScript, CSRF on every form."""

from __future__ import annotations

import uuid
from datetime import datetime
from functools import partial
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData

from henvis.deadlines import local_date
from henvis.services.centre import auth, casework, domain, store_referrals
from henvis.services.centre.deps import CaseworkerSessionDep, EngineDep, PagesDep, StateDep
from henvis.services.centre.domain_outcomes import EventIdConflict
from henvis.services.centre.key_store import KeyStoreUnavailable
from henvis.services.centre.login import LoginVerdict, authenticate
from henvis.services.centre.state import CentreState
from henvis.services.centre.store_referrals import NotFound
from henvis.services.centre.web_pages import (
    OUTCOME_LABELS_DA,
    TABS,
    Pages,
    deadline_shown,
    occurred_at_from_form,
    to_login,
)

# Pages are not part of the API: they stay out of the OpenAPI document.
router = APIRouter(include_in_schema=False)

#: A refused login's status and message, by verdict.
_LOGIN_REFUSALS = {
    LoginVerdict.RATE_LIMITED: (429, "For mange mislykkede forsøg. Vent 15 minutter, eller kontakt din administrator."),
    LoginVerdict.WRONG: (401, "Forkert brugernavn eller adgangskode."),
    LoginVerdict.CENTRE_NOT_SERVED: (403, "Dit center betjenes ikke af denne installation."),
}

#: Why an outcome was not recorded (status, message), by what recording it raised.
_OUTCOME_REFUSALS: dict[type[Exception], tuple[int, str]] = {
    NotFound: (404, "Henvisningen findes ikke."),
    domain.InvalidOccurredAt: (422, "Dato for udfaldet kan ikke ligge i fremtiden eller før sigtelsesdatoen."),
    EventIdConflict: (409, "Siden var forældet. Den er nu opdateret – vælg igen."),
    domain.IllegalTransition: (409, "Udfaldet kan ikke registreres nu. Vælg et af de mulige næste skridt nedenfor."),
}


@router.get("/")
def root(session: CaseworkerSessionDep):
    """To the inbox when logged in, else to the login page."""
    return RedirectResponse("/indbakke" if session and session.logged_in else "/login", status_code=303)


@router.get("/login", response_class=HTMLResponse)
def login_form(pages: PagesDep, session: CaseworkerSessionDep, state: StateDep, logget_ud: str | None = None):
    """The login form (with a CSRF token in a fresh anonymous session), or the provider's button."""
    if state.oidc is not None:
        anonymous = auth.Session.anonymous()
        return pages.render("login_oidc.html", anonymous, error=None, signed_out=logget_ud is not None)
    return pages.render("login.html", session or auth.Session.anonymous(), error=None, username="")


@router.post("/login", response_class=HTMLResponse)
async def login(request: Request, pages: PagesDep, session: CaseworkerSessionDep, state: StateDep):
    """Log in: to the inbox, or the form again with why not (401, 403, 429)."""
    if state.oidc is not None:  # no henvis passwords in this deployment: the provider's login
        return RedirectResponse("/login", status_code=303)
    form = await request.form()
    if not auth.csrf_valid(session, _text_field(form, "csrf_token")):
        return pages.refused(session)
    username = str(form.get("username") or "").strip()[:64]
    password = str(form.get("password") or "")
    client_ip = request.client.host if request.client else "unknown"
    # argon2 and the database are blocking work: keep them off the event loop.
    verdict, user = await run_in_threadpool(authenticate, state, username, password, client_ip)
    if user is None:  # refused: the verdict says why
        status_code, error = _LOGIN_REFUSALS[verdict]
        return pages.render("login.html", session, status_code=status_code, username=username, error=error)
    return pages.with_session(
        RedirectResponse("/indbakke", status_code=303), auth.Session.for_user(user.username, user.centre)
    )


@router.post("/logout")
async def logout(request: Request, pages: PagesDep, session: CaseworkerSessionDep, state: StateDep):
    """Log out: an anonymous session, and to the login page (via the provider's sign-out, which ends its session)."""
    form = await request.form()
    if not auth.csrf_valid(session, _text_field(form, "csrf_token")):
        return pages.refused(session)
    if state.oidc is not None and session.id_token:
        base = state.settings.inbox_url or str(request.base_url)  # behind an ingress: the public address
        after = state.settings.oidc_post_logout_url or f"{base.rstrip('/')}/login?logget_ud=1"
        response = await state.oidc.logout_redirect(
            request, post_logout_redirect_uri=after, id_token_hint=session.id_token
        )
        response.status_code = 303
        return pages.with_session(response, auth.Session.anonymous())
    return pages.with_session(RedirectResponse("/login", status_code=303), auth.Session.anonymous())


@router.get("/indbakke", response_class=HTMLResponse)
def inbox(pages: PagesDep, session: CaseworkerSessionDep, engine: EngineDep, fane: str = "open"):
    """The centre's referrals of one tab (``fane``), most urgent first, with every tab's count."""
    user = auth.caseworker(session)
    if user is None:
        return to_login()
    tab = fane if fane in dict(TABS) else "open"
    referrals = store_referrals.list_referrals(engine, user.centre, tab)
    counts = {key: len(store_referrals.list_referrals(engine, user.centre, key)) for key, _ in TABS}
    for referral in referrals:
        referral["deadline"] = deadline_shown(referral)
        referral["issued_on"] = local_date(datetime.fromisoformat(referral["issued_at"])).isoformat()
    return pages.render("inbox.html", user.session, tabs=TABS, tab=tab, referrals=referrals, counts=counts)


@router.get("/henvisning/{referral_id}", response_class=HTMLResponse)
def detail(
    referral_id: str, pages: PagesDep, session: CaseworkerSessionDep, state: StateDep, udfald: str | None = None
):
    """One referral with its contact details and buttons; ``udfald`` confirms what was just recorded."""
    user = auth.caseworker(session)
    if user is None:
        return to_login()
    try:
        referral = casework.read_referral(
            state.engine, state.keys, user.centre, str(uuid.UUID(referral_id)), actor=user.username, actor_kind="user"
        )
    except (ValueError, NotFound):
        return pages.no_such_referral(user.session)
    except KeyStoreUnavailable:
        return pages.key_store_unavailable(user.session)
    confirmation = OUTCOME_LABELS_DA.get(udfald) if udfald else None
    return pages.referral(user.session, referral, confirmation=confirmation)


@router.post("/henvisning/{referral_id}/udfald", response_class=HTMLResponse)
async def record(request: Request, referral_id: str, pages: PagesDep, session: CaseworkerSessionDep, state: StateDep):
    """Record the outcome of a button: back to the referral's page, confirmed (303) or with why not."""
    form = await request.form()
    if not auth.csrf_valid(session, _text_field(form, "csrf_token")):
        return pages.refused(session)
    user = auth.caseworker(session)
    if user is None:
        return to_login()
    outcome = str(form.get("outcome") or "")
    referral_uuid = _canonical_uuid(referral_id)
    if referral_uuid is None or not store_referrals.exists(state.engine, user.centre, referral_uuid):
        return pages.no_such_referral(user.session)
    try:
        occurred_at, event_id = _when_and_event_id(form)
    except ValueError:
        return _refused_outcome(pages, state, user, referral_uuid, 422, "Dato for udfaldet skal være en gyldig dato.")
    try:
        await run_in_threadpool(
            casework.record_and_count,
            state.engine,
            state.keys,
            centre=user.centre,
            referral_id=referral_uuid,
            outcome=outcome,
            actor=user.username,
            actor_kind="user",
            event_id=event_id,
            occurred_at=occurred_at,
        )
    except tuple(_OUTCOME_REFUSALS) as exc:
        status_code, error = _OUTCOME_REFUSALS[type(exc)]
        return _refused_outcome(pages, state, user, referral_uuid, status_code, error)
    except KeyStoreUnavailable:
        return pages.key_store_unavailable(user.session)
    return RedirectResponse(f"/henvisning/{referral_uuid}?{urlencode({'udfald': outcome})}", status_code=303)


def _text_field(form: FormData, name: str) -> str | None:
    """A form field's text; None when it is missing or a file."""
    value = form.get(name)
    return value if isinstance(value, str) else None


def _when_and_event_id(form: FormData) -> tuple[datetime | None, uuid.UUID | None]:
    """The outcome form's date as a moment, and its event id; ValueError for either garbled."""
    occurred_at = occurred_at_from_form(str(form.get("dato") or ""))
    # The form carries an event id made when the page was shown: a double submit is one outcome.
    event_id = uuid.UUID(str(form.get("event_id"))) if form.get("event_id") else None
    return occurred_at, event_id


def _canonical_uuid(text: str) -> str | None:
    try:
        return str(uuid.UUID(text))
    except ValueError:
        return None


def _refused_outcome(
    pages: Pages, state: CentreState, user: auth.Caseworker, referral_id: str, status_code: int, error: str
) -> HTMLResponse:
    """The referral's page again, as it is now, with why the outcome was not recorded."""
    try:
        fresh = store_referrals.get_referral(
            state.engine, user.centre, referral_id, partial(casework.reveal, state.engine, state.keys)
        )
    except KeyStoreUnavailable:
        return pages.key_store_unavailable(user.session)
    return pages.referral(user.session, fresh, status_code=status_code, error=error)
