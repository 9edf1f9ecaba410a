"""The composition root of the researcher API and page: builds the adapters and wires them.

Routes live in :mod:`.api_routes` (JSON/CSV) and :mod:`.page_routes` (HTML); they get
what is wired here from ``app.state`` through :mod:`.deps`.
"""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles
from starlette.middleware.sessions import SessionMiddleware

from henvis.auth import ClientRegistry
from henvis.db import make_engine, migrate
from henvis.http import create_app
from henvis.oidc import oauth_client
from henvis.registry import load_registry
from henvis.services.stats import api_routes, page_oidc, page_routes
from henvis.services.stats.reader import StatsReader
from henvis.services.stats.settings import StatsSettings
from henvis.services.stats.store import StatsStore


def create_stats_app(settings: StatsSettings | None = None, *, run_migrations: bool = True) -> FastAPI:
    """The stats HTTP app on ``settings`` (default: from the environment), database migrated."""
    settings = settings or StatsSettings()
    if run_migrations:
        migrate(settings.database_url, "stats")
    store = StatsStore(make_engine(settings.database_url))
    app = create_app(
        service="stats",
        title="henvis statistics",
        version="1",
        description="Aggregate, non-identifying figures of the referral programme for researchers (role `researcher`).",
        ready=store.ping,
    )
    app.state.settings = settings
    app.state.clients = ClientRegistry.from_settings(settings)
    app.state.reader = StatsReader(store, load_registry(settings.registry_path), settings.suppression_threshold)
    app.state.oidc = oauth_client(settings) if settings.login == "oidc" else None
    app.include_router(api_routes.router)
    app.mount("/static", StaticFiles(directory=str(page_routes.STATIC_DIR)), name="stats-static")
    if app.state.oidc is not None and settings.session_secret is not None:
        # The researcher's session after a provider sign-in (and authlib's flow marker), signed.
        app.add_middleware(
            SessionMiddleware,
            secret_key=settings.session_secret.get_secret_value(),
            session_cookie="henvis_stats_signin",
            max_age=settings.session_max_age_seconds,
            same_site="lax",
            https_only=settings.secure_cookies,
        )
        app.include_router(page_oidc.router)
    app.include_router(page_routes.router)
    return app
