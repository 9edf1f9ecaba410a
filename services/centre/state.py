"""The centre web app's wired adapters, one object per app (``app.state.centre``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy.engine import Engine

from henvis.auth import ClientRegistry
from henvis.registry import Registry
from henvis.services.centre.auth import SessionSigner
from henvis.services.centre.key_store import DataKeys
from henvis.services.centre.settings import CentreSettings


@dataclass(frozen=True)
class CentreState:
    """What the app factory wires once and every request reads through :mod:`deps`."""

    settings: CentreSettings
    registry: Registry
    #: the centres this deployment serves (a client or caseworker of another sees nothing)
    centres: list[str]
    engine: Engine
    clients: ClientRegistry
    signer: SessionSigner
    #: the consent service's key store, asked with each served centre's own credential
    keys: DataKeys
    #: the identity provider's authlib client when caseworkers sign in there (login=oidc)
    oidc: Any = None

    def centre_name(self, slug: str | None) -> str:
        """The centre's name for the page header ("" for none)."""
        centre = self.registry.by_slug(slug or "")
        return centre.name if centre else ""
