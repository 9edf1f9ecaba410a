"""The consent API's composition root: settings, database, registry and clients wired into the app.

The police routes are in ``routes.py``, what they depend on in ``deps.py``, and what the API
documents in ``openapi.py``.
"""

from __future__ import annotations

import base64
from functools import partial

from fastapi import FastAPI
from sqlalchemy import Engine

from henvis import __version__
from henvis.auth import ClientRegistry
from henvis.db import make_engine
from henvis.http import create_app
from henvis.registry import Registry, load_registry
from henvis.services.consent import key_routes, openapi, store
from henvis.services.consent.domain_keys import DataProtection
from henvis.services.consent.metrics import watch_outbox_backlog
from henvis.services.consent.middleware import CountRejections
from henvis.services.consent.routes import router
from henvis.services.consent.settings import ConsentSettings
from henvis.shredding import CasePseudonyms, KeyEncryptionKeys, new_secret


def create_consent_app(
    settings: ConsentSettings | None = None,
    *,
    engine: Engine | None = None,
    registry: Registry | None = None,
    clients: ClientRegistry | None = None,
    protection: DataProtection | None = None,
) -> FastAPI:
    """The consent API over ``engine`` (already migrated; ``henvis consent serve`` does that).

    Without ``protection``, the keys come from ``settings``; the app refuses to start without them.
    """
    settings = settings or ConsentSettings()
    engine = engine or make_engine(settings.database_url, **settings.engine_options())
    registry = registry or load_registry(settings.registry_path)
    clients = clients or ClientRegistry.from_settings(settings)
    protection = protection or data_protection(settings, registry)

    app = create_app(
        service="consent",
        title="henvis consent API",
        version=__version__,
        description=openapi.DESCRIPTION,
        ready=partial(store.ping, engine),
        max_body_bytes=settings.max_body_bytes,
    )
    app.state.engine = engine
    app.state.registry = registry
    app.state.clients = clients
    app.state.protection = protection
    app.add_middleware(CountRejections)
    app.include_router(router)
    app.include_router(key_routes.router)
    watch_outbox_backlog(partial(store.backlog, engine))
    # FastAPI's documented way to extend its document is to replace the app's ``openapi``
    # method; mypy forbids assigning to a method, and ``henvis.http.create_app`` offers no
    # FastAPI subclass that could override it instead.
    app.openapi = partial(openapi.build_document, app)  # type: ignore[method-assign]
    return app


def data_protection(settings: ConsentSettings, registry: Registry) -> DataProtection:
    """The configured keys with the registry; ``KeysNotConfigured`` when a key is missing."""
    return DataProtection(settings.key_encryption(), settings.case_pseudonyms(), registry)


def openapi_document(settings: ConsentSettings | None = None) -> dict:
    """The OpenAPI document without touching a database or a key (for ``henvis consent openapi``)."""
    settings = settings or ConsentSettings(database_url="sqlite://")
    throwaway = DataProtection(
        KeyEncryptionKeys.parse(f"unused:{new_secret()}"),
        CasePseudonyms(base64.b64decode(new_secret())),
        load_registry(settings.registry_path),
    )
    app = create_consent_app(
        settings, engine=make_engine("sqlite://"), clients=ClientRegistry([]), protection=throwaway
    )
    return app.openapi()
