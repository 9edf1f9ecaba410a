"""``henvis centre serve``: the app factory, the one place where the web app is wired.

It builds the adapters once (database, client registry, session signer, key store), puts them
on ``app.state.centre`` and mounts the routers: :mod:`api_routes` (JSON API for case
systems and auditors), :mod:`fhir_routes` (FHIR R4 for case systems) and :mod:`web_routes`
(the caseworkers' pages).
"""

from __future__ import annotations

import hashlib
from functools import partial

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException
from starlette.middleware.sessions import SessionMiddleware

from henvis.auth import ClientRegistry
from henvis.db import migrate
from henvis.http import create_app
from henvis.oidc import oauth_client
from henvis.registry import load_registry
from henvis.services.centre import api_routes, fhir_routes, web_audit, web_oidc, web_routes
from henvis.services.centre.auth import SessionSigner
from henvis.services.centre.database import make_centre_engine, ping
from henvis.services.centre.key_store import DataKeys
from henvis.services.centre.metrics import watch_inbox
from henvis.services.centre.settings import CentreSettings
from henvis.services.centre.state import CentreState
from henvis.services.centre.web_pages import STATIC_DIR


def build_app(
    settings: CentreSettings | None = None, *, local_only: bool = False, keys: DataKeys | None = None
) -> FastAPI:
    """The app; ``local_only`` (serving on loopback) allows a generated session secret.

    ``keys``: the key store (default: the consent service's, from the settings).
    """
    settings = settings or CentreSettings()
    registry = load_registry(settings.registry_path)
    centres = settings.centre_slugs(registry)
    keys = keys or settings.data_keys(centres)
    migrate(settings.database_url, "centre")
    engine = make_centre_engine(settings.database_url)
    clients = ClientRegistry.from_settings(settings)
    watch_inbox(engine, centres, settings.working_hours())
    app = create_app(
        service="centre",
        title="henvis centre inbox",
        version="1",
        description="Referrals for the rusmiddelcentre: list, read, record outcomes; access log for auditors.",
        ready=partial(ping, engine),
    )
    secret = settings.resolved_session_secret(local_only)
    signer = SessionSigner(secret, settings.session_max_age_seconds, settings.session_idle_seconds)
    oidc = oauth_client(settings) if settings.login == "oidc" else None
    app.state.centre = CentreState(
        settings=settings,
        registry=registry,
        centres=centres,
        engine=engine,
        clients=clients,
        signer=signer,
        keys=keys,
        oidc=oidc,
    )
    app.include_router(api_routes.router)
    app.include_router(fhir_routes.router)
    app.add_exception_handler(HTTPException, fhir_routes.http_error)
    app.mount("/static", StaticFiles(directory=str(STATIC_DIR)), name="centre-static")
    if oidc is not None:
        # authlib keeps a login flow's marker (state, nonce, PKCE verifier stay on the server)
        # in a cookie of its own, for the ten minutes a login may take, on /login only.
        app.add_middleware(
            SessionMiddleware,
            secret_key=hashlib.sha256(b"henvis-centre-oidc-flow|" + secret).hexdigest(),
            session_cookie="henvis_centre_login_flow",
            max_age=600,
            path="/login",
            same_site="lax",
            # Like the session cookie: Secure unless set otherwise or served on loopback only.
            https_only=settings.secure_cookies if settings.secure_cookies is not None else not local_only,
        )
        app.include_router(web_oidc.router)
        app.include_router(web_audit.router)
    app.include_router(web_routes.router)
    return app
