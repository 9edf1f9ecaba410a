"""What the centre's routes depend on, as ``Annotated`` aliases.

Everything comes from the one :class:`CentreState` the app factory puts on
``app.state.centre``, read per request: the routers are plain modules, and every app built
(tests build many) has its own engine, clients and session key.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.engine import Engine

from henvis.auth import ApiClient
from henvis.http import BearerCredentials, admit_client
from henvis.services.centre.auth import SESSION_COOKIE, Session
from henvis.services.centre.state import CentreState
from henvis.services.centre.web_pages import Pages


def get_state(request: Request) -> CentreState:
    """The app's wired adapters."""
    return request.app.state.centre


StateDep = Annotated[CentreState, Depends(get_state)]


def get_engine(state: StateDep) -> Engine:
    """The inbox database."""
    return state.engine


EngineDep = Annotated[Engine, Depends(get_engine)]

# ---------------------------------------------------------------- API clients (bearer tokens)


def _is_centre_role(role: str) -> bool:
    return role.startswith("centre:")


def get_centre_client(request: Request, credentials: BearerCredentials, state: StateDep) -> ApiClient:
    """A client with a ``centre:<slug>`` role: 401 without a valid token, 403 with another role."""
    return admit_client(request, state.clients, credentials, _is_centre_role)


CentreClientDep = Annotated[ApiClient, Depends(get_centre_client)]


def get_auditor(request: Request, credentials: BearerCredentials, state: StateDep) -> ApiClient:
    """A client with the ``auditor`` role: 401 without a valid token, 403 with another role."""
    return admit_client(request, state.clients, credentials, {"auditor"})


AuditorDep = Annotated[ApiClient, Depends(get_auditor)]


def get_client_centre(client: CentreClientDep, state: StateDep) -> str | None:
    """The client's centre, if this deployment serves it (otherwise it sees nothing)."""
    return client.centre if client.centre in state.centres else None


ClientCentreDep = Annotated[str | None, Depends(get_client_centre)]

# ---------------------------------------------------------------- caseworkers (session cookie)


def get_caseworker_session(request: Request, state: StateDep) -> Session | None:
    """The caseworker's session, or None if the cookie is missing, tampered with or expired."""
    return state.signer.loads(request.cookies.get(SESSION_COOKIE))


CaseworkerSessionDep = Annotated[Session | None, Depends(get_caseworker_session)]


def get_pages(request: Request, state: StateDep) -> Pages:
    """The page renderer of this request."""
    return Pages(request, state)


PagesDep = Annotated[Pages, Depends(get_pages)]
