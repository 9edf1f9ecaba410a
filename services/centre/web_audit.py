"""The auditor's access log as a page, for an auditor signed in at the identity provider.

The same lines the ``auditor`` API role reads (``GET /v1/access-log``), newest first; an
auditor's session has no centre, so it opens no inbox and no referral.
"""

from __future__ import annotations

import uuid

from fastapi import APIRouter
from fastapi.responses import HTMLResponse
from starlette.concurrency import run_in_threadpool

from henvis.services.centre import auth, store_access_log
from henvis.services.centre.deps import CaseworkerSessionDep, EngineDep, PagesDep
from henvis.services.centre.web_pages import to_login

router = APIRouter(include_in_schema=False)

#: Lines shown on the page; the API's CSV has them all.
PAGE_LIMIT = 500


@router.get("/adgangslog", response_class=HTMLResponse)
async def access_log_page(
    pages: PagesDep, session: CaseworkerSessionDep, engine: EngineDep, henvisning: str | None = None
):
    """The access log, newest first, optionally of one referral; the login page for anyone but an auditor."""
    if session is None or auth.auditor(session) is None:
        return to_login()
    referral_id, error = None, None
    if henvisning:
        try:
            referral_id = str(uuid.UUID(henvisning.strip()))
        except ValueError:
            error = "Henvisningens nummer er ikke gyldigt."
    rows = await run_in_threadpool(store_access_log.access_log_rows, engine, referral_id)
    shown = list(reversed(rows))[:PAGE_LIMIT]
    return pages.render(
        "access_log.html",
        session,
        rows=shown,
        referral_id=referral_id,
        error=error,
        limit=PAGE_LIMIT,
        status_code=422 if error else 200,
    )
