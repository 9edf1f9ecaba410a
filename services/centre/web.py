"""The caseworkers' web page: server-rendered Danish HTML, no JavaScript, CSRF on every form."""

from __future__ import annotations

import uuid
from datetime import date, datetime, time
from pathlib import Path
from urllib.parse import urlencode

import structlog
from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from starlette.concurrency import run_in_threadpool

from henvis.deadlines import DANISH_TIME, local_date
from henvis.services.centre import auth, domain, store
from henvis.services.centre.api import CentreContext, record_and_count

log = structlog.get_logger("henvis.centre.web")

HERE = Path(__file__).parent
templates = Jinja2Templates(directory=str(HERE / "templates"))
templates.env.globals.update(
    outcome_label=lambda code: domain.OUTCOME_LABELS_DA.get(code or "", code or "–"),
    status_label=lambda code: domain.STATUS_LABELS_DA.get(code, code),
    offence_label=lambda code: domain.OFFENCE_LABELS_DA.get(code, code),
    new_event_id=lambda: str(uuid.uuid4()),
    # Caseworkers read Danish wall-clock time, not UTC.
    danish_time=lambda iso: datetime.fromisoformat(iso).astimezone(DANISH_TIME).strftime("%d-%m-%Y %H:%M"),
    danish_date=lambda iso: date.fromisoformat(iso).strftime("%d-%m-%Y") if iso else "–",
    dict=dict,
)

TABS = (("open", "Åbne"), ("overdue", "Overskredne"), ("closed", "Afsluttede"), ("withdrawn", "Trukket tilbage"))

_SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


def register_web(app, ctx: CentreContext, *, local_only: bool = False) -> None:
    settings = ctx.settings
    signer = auth.SessionSigner(settings.resolved_session_secret(local_only), settings.session_max_age_seconds)
    centre_names = {centre.slug: centre.name for centre in ctx.registry.centres}
    app.mount("/static", StaticFiles(directory=str(HERE / "static")), name="centre-static")

    def current_session(request: Request) -> auth.Session | None:
        return signer.loads(request.cookies.get(auth.SESSION_COOKIE))

    def render(request: Request, template: str, session: auth.Session, status_code: int = 200, **context) -> HTMLResponse:
        response = templates.TemplateResponse(
            request,
            template,
            {"session": session, "centre_name": centre_names.get(session.centre or "", ""), **context},
            status_code=status_code,
        )
        return with_session(request, response, session)

    def with_session(request: Request, response: Response, session: auth.Session) -> Response:
        response.set_cookie(
            auth.SESSION_COOKIE,
            signer.dumps(session),
            max_age=settings.session_max_age_seconds,
            httponly=True,
            samesite="lax",
            secure=settings.cookies_secure(request.url.hostname or ""),
            path="/",
        )
        response.headers.update(_SECURITY_HEADERS)
        return response

    def refused(request: Request, session: auth.Session | None) -> HTMLResponse:
        return render(
            request, "message.html", session or auth.Session.anonymous(), status_code=403,
            title="Handlingen blev afvist",
            message="Formularen var udløbet eller ugyldig (manglende sikkerhedsnøgle). Gå tilbage, genindlæs siden og prøv igen.",
        )

    def to_login() -> RedirectResponse:
        return RedirectResponse("/login", status_code=303)

    @app.get("/", include_in_schema=False)
    def root(request: Request):
        session = current_session(request)
        return RedirectResponse("/indbakke" if session and session.logged_in else "/login", status_code=303)

    @app.get("/login", include_in_schema=False, response_class=HTMLResponse)
    def login_form(request: Request):
        session = current_session(request) or auth.Session.anonymous()
        return render(request, "login.html", session, error=None, username="")

    @app.post("/login", include_in_schema=False, response_class=HTMLResponse)
    async def login(request: Request):
        session = current_session(request)
        form = await request.form()
        if not auth.csrf_valid(session, form.get("csrf_token")):
            return refused(request, session)
        username = str(form.get("username") or "").strip()[:64]
        password = str(form.get("password") or "")
        client_ip = request.client.host if request.client else "unknown"
        # argon2 and the database are blocking work: keep them off the event loop.
        verdict, user = await run_in_threadpool(authenticate, username, password, client_ip)
        if verdict == "rate_limited":
            return render(request, "login.html", session, status_code=429, username=username,
                          error="For mange mislykkede forsøg. Vent 15 minutter, eller kontakt din administrator.")
        if verdict == "wrong":
            return render(request, "login.html", session, status_code=401, username=username,
                          error="Forkert brugernavn eller adgangskode.")
        if verdict == "centre_not_served":
            return render(request, "login.html", session, status_code=403, username=username,
                          error="Dit center betjenes ikke af denne installation.")
        return with_session(request, RedirectResponse("/indbakke", status_code=303), auth.Session.for_user(user.username, user.centre))

    def authenticate(username: str, password: str, client_ip: str):
        """(verdict, user): ``ok``, ``wrong``, ``rate_limited`` or ``centre_not_served``."""
        subject = store.login_subject(username, client_ip)
        if store.recent_login_failures(ctx.engine, subject, settings.login_window_seconds) >= settings.login_max_failures:
            log.warning("login_rate_limited")
            return "rate_limited", None
        user = store.get_user(ctx.engine, username) if username else None
        if user is None or not auth.verify_password(user.password_hash, password):
            if user is None:
                auth.verify_password(None, password)  # same time whether or not the user exists
            store.add_login_failure(ctx.engine, subject)
            log.info("login_failed")
            return "wrong", None
        if user.centre not in ctx.centres:
            return "centre_not_served", None
        store.clear_login_failures(ctx.engine, subject)
        if auth.needs_rehash(user.password_hash):
            store.set_password_hash(ctx.engine, user.username, auth.hash_password(password))
        store.log_access(ctx.engine, actor=user.username, actor_kind="user", centre=user.centre, referral_id=None, action="login")
        return "ok", user

    @app.post("/logout", include_in_schema=False)
    async def logout(request: Request):
        session = current_session(request)
        form = await request.form()
        if not auth.csrf_valid(session, form.get("csrf_token")):
            return refused(request, session)
        return with_session(request, RedirectResponse("/login", status_code=303), auth.Session.anonymous())

    @app.get("/indbakke", include_in_schema=False, response_class=HTMLResponse)
    def inbox(request: Request, fane: str = "open"):
        session = current_session(request)
        if not (session and session.logged_in):
            return to_login()
        tab = fane if fane in dict(TABS) else "open"
        referrals = store.list_referrals(ctx.engine, session.centre, tab)
        counts = {key: len(store.list_referrals(ctx.engine, session.centre, key)) for key, _ in TABS}
        for referral in referrals:
            referral["deadline"] = _deadline_shown(referral)
            referral["issued_on"] = local_date(datetime.fromisoformat(referral["issued_at"])).isoformat()
        return render(request, "inbox.html", session, tabs=TABS, tab=tab, referrals=referrals, counts=counts)

    @app.get("/henvisning/{referral_id}", include_in_schema=False, response_class=HTMLResponse)
    def detail(request: Request, referral_id: str, udfald: str | None = None):
        session = current_session(request)
        if not (session and session.logged_in):
            return to_login()
        try:
            referral = store.get_referral(ctx.engine, session.centre, str(uuid.UUID(referral_id)))
        except (ValueError, store.NotFound):
            return render(request, "message.html", session, status_code=404, title="Henvisningen findes ikke",
                          message="Der er ingen henvisning med dette nummer i jeres indbakke.")
        store.log_access(ctx.engine, actor=session.username, actor_kind="user", centre=session.centre,
                         referral_id=referral["referral_id"],
                         action="view_contact_details" if referral["person"] else "view_referral")
        confirmation = domain.OUTCOME_LABELS_DA.get(udfald) if udfald else None
        return render(request, "detail.html", session, referral=referral, confirmation=confirmation, error=None,
                      today=_today())

    @app.post("/henvisning/{referral_id}/udfald", include_in_schema=False, response_class=HTMLResponse)
    async def record(request: Request, referral_id: str):
        session = current_session(request)
        form = await request.form()
        if not auth.csrf_valid(session, form.get("csrf_token")):
            return refused(request, session)
        if not session.logged_in:
            return to_login()
        outcome = str(form.get("outcome") or "")
        try:
            referral_uuid = str(uuid.UUID(referral_id))
        except ValueError:
            referral_uuid = None
        referral = store.get_referral_or_none(ctx.engine, session.centre, referral_uuid) if referral_uuid else None
        if referral is None:
            return render(request, "message.html", session, status_code=404, title="Henvisningen findes ikke",
                          message="Der er ingen henvisning med dette nummer i jeres indbakke.")

        def again(status_code: int, error: str) -> HTMLResponse:
            fresh = store.get_referral(ctx.engine, session.centre, referral_uuid)
            return render(request, "detail.html", session, status_code=status_code, referral=fresh, confirmation=None,
                          error=error, today=_today())

        try:
            occurred_at = _occurred_at(str(form.get("dato") or ""))
            # The form carries an event id made when the page was shown: a double submit is one outcome.
            event_id = uuid.UUID(str(form.get("event_id"))) if form.get("event_id") else None
        except ValueError:
            return again(422, "Dato for udfaldet skal være en gyldig dato.")
        try:
            await run_in_threadpool(
                lambda: record_and_count(ctx, centre=session.centre, referral_id=referral_uuid, outcome=outcome,
                                         actor=session.username, actor_kind="user", event_id=event_id, occurred_at=occurred_at)
            )
        except store.NotFound:
            return again(404, "Henvisningen findes ikke.")
        except domain.InvalidOccurredAt:
            return again(422, "Dato for udfaldet kan ikke ligge i fremtiden eller før sigtelsesdatoen.")
        except store.EventIdConflict:
            return again(409, "Siden var forældet. Den er nu opdateret – vælg igen.")
        except domain.IllegalTransition:
            return again(409, "Udfaldet kan ikke registreres nu. Vælg et af de mulige næste skridt nedenfor.")
        return RedirectResponse(f"/henvisning/{referral_uuid}?{urlencode({'udfald': outcome})}", status_code=303)


def _deadline_shown(referral: dict) -> str | None:
    """The deadline a caseworker works towards: contact until someone has called, then treatment start."""
    if referral["status"] in ("closed", "withdrawn"):
        return None
    return referral["contact_due_by"] if referral["last_outcome"] is None else referral["treatment_due_by"]


def _today() -> str:
    return datetime.now(DANISH_TIME).date().isoformat()


def _occurred_at(day: str) -> datetime | None:
    """The form's date as a moment: now for today (or no date), noon Danish time for an earlier day."""
    if not day or day == _today():
        return None
    chosen = date.fromisoformat(day)
    return datetime.combine(chosen, time(12, 0), tzinfo=DANISH_TIME)
