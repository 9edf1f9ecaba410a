"""Rendering the caseworkers' pages: Danish templates, the session cookie, security headers."""

from __future__ import annotations

import uuid
from datetime import date, datetime, time
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlsplit

from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from henvis.deadlines import DANISH_TIME
from henvis.services.centre import auth
from henvis.services.centre.domain import NEW, WITHDRAWN
from henvis.services.centre.state import CentreState

#: Any response: :meth:`Pages.with_session` hands back the kind it was given.
_AnyResponse = TypeVar("_AnyResponse", bound=Response)

HERE = Path(__file__).parent
STATIC_DIR = HERE / "static"

OUTCOME_LABELS_DA: dict[str, str] = {
    "contact_attempted": "Forsøgt kontaktet",
    "contacted": "Kontakt opnået",
    "first_interview_held": "Første samtale holdt",
    "follow_up_accepted": "Forløb ud over første samtale aftalt",
    "unreachable": "Kunne ikke træffes",
    "declined_by_person": "Borgeren takkede nej",
    "returned_wrong_centre": "Forkert center – send tilbage",
    "withdrawal_acknowledged": "Tilbagetrækning kvitteret",
    NEW: "Ny",
    WITHDRAWN: "Samtykke trukket tilbage",
}
STATUS_LABELS_DA = {"open": "Åben", "overdue": "Overskredet", "closed": "Afsluttet", "withdrawn": "Trukket tilbage"}
OFFENCE_LABELS_DA = {
    "drink_driving": "Spirituskørsel",
    "drug_driving": "Kørsel i narkopåvirket tilstand",
    "drink_and_drug_driving": "Spiritus- og narkokørsel",
}

#: The inbox's tabs: (list filter, label).
TABS = (("open", "Åbne"), ("overdue", "Overskredne"), ("closed", "Afsluttede"), ("withdrawn", "Trukket tilbage"))

templates = Jinja2Templates(directory=str(HERE / "templates"))
templates.env.globals.update(
    outcome_label=lambda code: OUTCOME_LABELS_DA.get(code or "", code or "–"),
    status_label=lambda code: STATUS_LABELS_DA.get(code, code),
    offence_label=lambda code: OFFENCE_LABELS_DA.get(code, code),
    new_event_id=lambda: str(uuid.uuid4()),
    # Caseworkers read Danish wall-clock time, not UTC.
    danish_time=lambda iso: datetime.fromisoformat(iso).astimezone(DANISH_TIME).strftime("%d-%m-%Y %H:%M"),
    danish_date=lambda iso: date.fromisoformat(iso).strftime("%d-%m-%Y") if iso else "–",
    dict=dict,
)

_SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


class Pages:
    """The pages of one request; every answer carries the (re-signed) session cookie."""

    def __init__(self, request: Request, state: CentreState):
        self.request = request
        self.state = state

    def render(self, template: str, session: auth.Session, status_code: int = 200, **context) -> HTMLResponse:
        """``template`` with ``context``, the session and its centre's name."""
        response = templates.TemplateResponse(
            self.request,
            template,
            {"session": session, "centre_name": self.state.centre_name(session.centre), **context},
            status_code=status_code,
        )
        return self.with_session(response, session)

    def with_session(self, response: _AnyResponse, session: auth.Session) -> _AnyResponse:
        """``response`` with ``session`` in a signed cookie and the security headers."""
        settings = self.state.settings
        response.set_cookie(
            auth.SESSION_COOKIE,
            self.state.signer.dumps(session),
            max_age=settings.session_max_age_seconds,
            httponly=True,
            samesite="lax",
            secure=settings.cookies_secure(self.request.url.hostname or ""),
            path="/",
        )
        response.headers.update(_SECURITY_HEADERS)
        if settings.login == "oidc" and settings.oidc_issuer:
            # Signing out posts to /logout, which redirects to the provider: a form action too.
            issuer = urlsplit(settings.oidc_issuer)
            policy = response.headers["Content-Security-Policy"]
            response.headers["Content-Security-Policy"] = policy.replace(
                "form-action 'self'", f"form-action 'self' {issuer.scheme}://{issuer.netloc}"
            )
        return response

    def referral(
        self,
        session: auth.Session,
        referral: dict,
        *,
        status_code: int = 200,
        confirmation: str | None = None,
        error: str | None = None,
    ) -> HTMLResponse:
        """One referral's page, with a confirmation of what was recorded or an error."""
        return self.render(
            "detail.html",
            session,
            status_code=status_code,
            referral=referral,
            confirmation=confirmation,
            error=error,
            today=today_in_denmark(),
        )

    def refused(self, session: auth.Session | None) -> HTMLResponse:
        """403: a form without a valid CSRF token."""
        return self.render(
            "message.html",
            session or auth.Session.anonymous(),
            status_code=403,
            title="Handlingen blev afvist",
            message="Formularen var udløbet eller ugyldig (manglende sikkerhedsnøgle). Gå tilbage, genindlæs siden og prøv igen.",
        )

    def no_such_referral(self, session: auth.Session) -> HTMLResponse:
        """404: no such referral in this caseworker's inbox (another centre's looks the same)."""
        return self.render(
            "message.html",
            session,
            status_code=404,
            title="Henvisningen findes ikke",
            message="Der er ingen henvisning med dette nummer i jeres indbakke.",
        )

    def key_store_unavailable(self, session: auth.Session) -> HTMLResponse:
        """503: the key store did not answer, so the referral's contact details cannot be opened."""
        return self.render(
            "message.html",
            session,
            status_code=503,
            title="Henvisningen kan ikke åbnes lige nu",
            message="Kontaktoplysningerne kan ikke hentes i øjeblikket. Prøv igen om lidt.",
        )


def to_login() -> RedirectResponse:
    """Off to the login page (a page that needs a login was asked for without one)."""
    return RedirectResponse("/login", status_code=303)


def deadline_shown(referral: dict) -> str | None:
    """The deadline a caseworker works towards: contact until someone has called, then treatment start."""
    if referral["status"] in ("closed", "withdrawn"):
        return None
    return referral["contact_due_by"] if referral["last_outcome"] is None else referral["treatment_due_by"]


def today_in_denmark() -> str:
    """Today's Danish date, ISO (the outcome form's default and latest date)."""
    return datetime.now(DANISH_TIME).date().isoformat()


def occurred_at_from_form(day: str) -> datetime | None:
    """The form's date as a moment: now for today (or no date), noon Danish time for an earlier day.

    Raises ValueError for a date that is not one.
    """
    if not day or day == today_in_denmark():
        return None
    chosen = date.fromisoformat(day)
    return datetime.combine(chosen, time(12, 0), tzinfo=DANISH_TIME)
