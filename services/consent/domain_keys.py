"""The key store's rules, as pure functions: which data key a new consent gets and who may have
it; whom a key is released to; what a withdrawal, a hand-over and retention do to it.

A referral's data key goes to exactly one grantee, decided when the consent is accepted by
the same routing rule the router applies (``Registry.route``): the role ``centre:<slug>`` of
the centre it is routed to, or ``manual-handling`` when no centre can take it.  A centre that
returns a referral as not its resident's hands the key to ``manual-handling``.  Anyone else,
a key that never existed and a destroyed key all get the same answer: nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from henvis.registry import Registry, Route, ToCentre
from henvis.schemas.events import ConsentGiven, referral_id_for
from henvis.shredding import CasePseudonyms, KeyEncryptionKeys, WrappedKey

MANUAL_HANDLING_ROLE = "manual-handling"
CENTRE_ROLE_PREFIX = "centre:"


class KeyAction(StrEnum):
    """What the key access log records."""

    RELEASED = "key_released"
    REFUSED = "key_refused"
    HANDED_TO_MANUAL_HANDLING = "key_handed_to_manual_handling"
    DESTROYED_WITHDRAWAL = "key_destroyed_withdrawal"
    DESTROYED_RETENTION = "key_destroyed_retention"


class DestroyedBecause(StrEnum):
    WITHDRAWAL = "withdrawal"
    RETENTION = "retention"


DESTROY_ACTIONS = {
    DestroyedBecause.WITHDRAWAL: KeyAction.DESTROYED_WITHDRAWAL,
    DestroyedBecause.RETENTION: KeyAction.DESTROYED_RETENTION,
}


@dataclass(frozen=True)
class DataProtection:
    """What accepting a consent protects it with: the KEKs that wrap its data key, the
    pseudonym that names its case, and the registry that says who may have the key."""

    keks: KeyEncryptionKeys
    pseudonyms: CasePseudonyms
    registry: Registry


@dataclass(frozen=True)
class NewDataKey:
    """A data key as the key store keeps it: wrapped, with its one grantee."""

    referral_id: str
    case_pseudonym: str
    grantee: str
    kek_id: str
    wrapped_key: str
    created_at: datetime


@dataclass(frozen=True)
class StoredKey:
    """A key-store row as the rules need it; ``wrapped`` is None once the key is destroyed."""

    referral_id: str
    grantee: str
    returned_by: str | None
    wrapped: WrappedKey | None


@dataclass(frozen=True)
class WithdrawnKeys:
    """Which keys a withdrawal destroys: every key of the case, or one referral's."""

    case_pseudonym: str
    referral_id: str | None = None


def grantee_of(route: Route) -> str:
    """The role that may have the data key of a consent routed so."""
    if isinstance(route, ToCentre):
        return CENTRE_ROLE_PREFIX + route.centre.slug
    return MANUAL_HANDLING_ROLE


def new_data_key(consent: ConsentGiven, protection: DataProtection, data_key: bytes, now: datetime) -> NewDataKey:
    """The key-store row of ``consent``'s referral, for ``data_key``."""
    referral_id = referral_id_for(consent.event_id)
    wrapped = protection.keks.wrap(referral_id, data_key)
    return NewDataKey(
        referral_id=str(referral_id),
        case_pseudonym=protection.pseudonyms(consent.case_ref),
        grantee=grantee_of(protection.registry.route(consent.preferred_centre, consent.municipality_code)),
        kek_id=wrapped.kek_id,
        wrapped_key=wrapped.wrapped,
        created_at=now,
    )


def releasable(key: StoredKey | None, role: str) -> bool:
    """Whether a client with ``role`` gets the key: only its live grantee does."""
    return key is not None and key.wrapped is not None and key.grantee == role


def hand_over(key: StoredKey | None, role: str) -> bool | None:
    """A centre returning its referral hands the key to manual handling.

    True: hand it over now; False: done already (a repeat by the same centre); None: refused
    (not this centre's key, destroyed, or none).
    """
    if key is None or key.wrapped is None or not role.startswith(CENTRE_ROLE_PREFIX):
        return None
    if key.grantee == role:
        return True
    if key.grantee == MANUAL_HANDLING_ROLE and key.returned_by == role:
        return False
    return None


def expiry_cutoff(now: datetime, max_age_days: float) -> datetime:
    """Keys made before this moment are past the key store's backstop retention."""
    return now - timedelta(days=max_age_days)
