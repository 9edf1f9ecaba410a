"""Dependencies of the police routes, as ``Annotated`` aliases over ``request.app.state``.

The composition root (``api.create_consent_app``) puts the engine, the registry and the
client list on ``app.state``; the routes name what they need with these aliases.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy import Engine

from henvis.auth import ApiClient, ClientRegistry
from henvis.http import BearerCredentials, admit_client_on_loop, require_json
from henvis.registry import Registry
from henvis.services.consent.domain_keys import CENTRE_ROLE_PREFIX, MANUAL_HANDLING_ROLE, DataProtection

POLICE_ROLE = "police"
_POLICE_ROLES = frozenset({POLICE_ROLE})


# These are async only so that FastAPI calls them on the event loop: a plain ``def``
# dependency costs a worker-thread hop per request.
async def get_engine(request: Request) -> Engine:
    """The consent database's engine."""
    return request.app.state.engine


async def get_registry(request: Request) -> Registry:
    """The centre registry the decisions are checked against."""
    return request.app.state.registry


async def get_clients(request: Request) -> ClientRegistry:
    """The API clients and their roles."""
    return request.app.state.clients


async def get_protection(request: Request) -> DataProtection:
    """The keys and registry consents are protected with."""
    return request.app.state.protection


EngineDep = Annotated[Engine, Depends(get_engine)]
ProtectionDep = Annotated[DataProtection, Depends(get_protection)]
RegistryDep = Annotated[Registry, Depends(get_registry)]
ClientsDep = Annotated[ClientRegistry, Depends(get_clients)]


async def police_client(request: Request, clients: ClientsDep, credentials: BearerCredentials) -> ApiClient:
    """The calling client, admitted only with the police role: 401 when unknown, 403 otherwise."""
    return await admit_client_on_loop(request, clients, credentials, _POLICE_ROLES)


PoliceClientDep = Annotated[ApiClient, Depends(police_client)]
#: 415 unless the body is declared ``application/json``.
JsonBodyDep = Annotated[None, Depends(require_json)]


def _holds_keys(role: str) -> bool:
    return role.startswith(CENTRE_ROLE_PREFIX) or role == MANUAL_HANDLING_ROLE


async def key_holder(request: Request, clients: ClientsDep, credentials: BearerCredentials) -> ApiClient:
    """A client that may ask for data keys: a centre or the manual-handling role."""
    return await admit_client_on_loop(request, clients, credentials, _holds_keys)


async def centre_client(request: Request, clients: ClientsDep, credentials: BearerCredentials) -> ApiClient:
    """A centre's client (``centre:<slug>``)."""
    return await admit_client_on_loop(request, clients, credentials, lambda role: role.startswith(CENTRE_ROLE_PREFIX))


async def auditor(request: Request, clients: ClientsDep, credentials: BearerCredentials) -> ApiClient:
    """A client with the auditor role."""
    return await admit_client_on_loop(request, clients, credentials, {"auditor"})


KeyHolderDep = Annotated[ApiClient, Depends(key_holder)]
CentreClientDep = Annotated[ApiClient, Depends(centre_client)]
AuditorDep = Annotated[ApiClient, Depends(auditor)]
