"""The researchers' page templates, and the sign-in page both sign-ins (token, OIDC) answer with."""

from __future__ import annotations

from pathlib import Path

from fastapi import Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

TEMPLATES = Jinja2Templates(directory=str(Path(__file__).parent / "templates"))


def login_page(request: Request, status: int, message: str | None = None) -> HTMLResponse:
    """The sign-in page: the provider's button when the page signs in with OIDC, else the token form."""
    oidc = getattr(request.app.state, "oidc", None) is not None
    return TEMPLATES.TemplateResponse(request, "login.html", {"message": message, "oidc": oidc}, status_code=status)
