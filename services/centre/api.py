"""``henvis centre serve``: the app factory, the one place where the web app is wired.

It builds the adapters once (database, client registry, session signer, key store), puts them
on ``app.state.centre`` and mounts the routers: :mod:`api_routes` (JSON API for case
systems and auditors), :mod:`fhir_routes` (FHIR R4 for case systems) and :mod:`web_routes`
(the caseworkers' pages).
"""

from __future__ import annotations

from functools import partial

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException

from henvis.auth import ClientRegistry
from henvis.db import migrate
from henvis.http import create_app
from henvis.registry import load_registry
from henvis.services.centre import api_routes, fhir_routes, web_routes
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
    signer = SessionSigner(settings.resolved_session_secret(local_only), settings.session_max_age_seconds)
    app.state.centre = CentreState(
        settings=settings, registry=registry, centres=centres, engine=engine, clients=clients, signer=signer, keys=keys
    )
    app.include_router(api_routes.router)
    app.include_router(fhir_routes.router)
    app.add_exception_handler(HTTPException, fhir_routes.http_error)
    app.mount("/static", StaticFiles(directory=str(STATIC_DIR)), name="centre-static")
    app.include_router(web_routes.router)
    return app
