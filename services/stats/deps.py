"""Injected dependencies of the stats routes, as ``Annotated`` aliases.

The composition root (:func:`henvis.services.stats.api.create_stats_app`) puts the wired
objects on ``app.state``; routes get them only through these dependencies, so a test can
mount a router on an app whose state holds fakes.
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import Depends, Query, Request

from henvis.auth import ApiClient, ClientRegistry
from henvis.http import BearerCredentials, admit_client
from henvis.services.stats.filters import parse_filters
from henvis.services.stats.reader import StatsReader
from henvis.services.stats.settings import StatsSettings
from henvis.services.stats.store import Filters

RESEARCHER_ROLES = frozenset({"researcher"})


def get_settings(request: Request) -> StatsSettings:
    """The service's settings."""
    return request.app.state.settings


def get_clients(request: Request) -> ClientRegistry:
    """The API clients (tokens and roles) that may sign in."""
    return request.app.state.clients


def get_reader(request: Request) -> StatsReader:
    """The published (suppressed) tables."""
    return request.app.state.reader


SettingsDep = Annotated[StatsSettings, Depends(get_settings)]
ClientsDep = Annotated[ClientRegistry, Depends(get_clients)]
ReaderDep = Annotated[StatsReader, Depends(get_reader)]


def require_researcher(request: Request, clients: ClientsDep, credentials: BearerCredentials) -> ApiClient:
    """The bearer token's client: 401 without a known token, 403 for a role other than researcher."""
    return admit_client(request, clients, credentials, RESEARCHER_ROLES)


FiltersDep = Annotated[Filters, Depends(parse_filters)]
OutputFormat = Annotated[Literal["json", "csv"], Query(alias="format")]
