"""Pure rules of the consent service: idempotency, registry checks, withdrawals, leasing.

No I/O here: the API (``api.py``), the store (``store.py``) and the relay (``relay.py``)
call these functions with what they read, so every rule is testable without a database.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from henvis.registry import Registry
from henvis.schemas.events import ConsentDeclined, ConsentGiven, ConsentWithdrawn, Event, referral_id_for

ACCEPTED = "accepted"


class Verdict(StrEnum):
    """What to do with an event given what the store already holds under its event_id."""

    NEW = "new"  # first time: store it, answer 202
    REPLAY = "replay"  # the same event again: answer 200 with the original result
    CONFLICT = "conflict"  # another event under a known event_id: answer 409


class RejectReason(StrEnum):
    """Closed set of reasons for ``henvis_consent_rejected_total{reason}``."""

    UNAUTHENTICATED = "unauthenticated"
    FORBIDDEN = "forbidden"
    INVALID = "invalid"
    UNKNOWN_CENTRE = "unknown_centre"
    UNKNOWN_REFERRAL = "unknown_referral"
    CONFLICT = "conflict"
    TOO_LARGE = "too_large"
    UNSUPPORTED_MEDIA_TYPE = "unsupported_media_type"
    UNAVAILABLE = "unavailable"


REASON_BY_STATUS = {
    401: RejectReason.UNAUTHENTICATED,
    403: RejectReason.FORBIDDEN,
    409: RejectReason.CONFLICT,
    413: RejectReason.TOO_LARGE,
    415: RejectReason.UNSUPPORTED_MEDIA_TYPE,
    422: RejectReason.INVALID,
    503: RejectReason.UNAVAILABLE,
}


def canonical_hash(event: Event) -> str:
    """SHA-256 of the parsed event in canonical JSON.

    Two bodies that differ only in key order, whitespace or phone formatting
    (``12 34 56 78`` vs ``+4512345678``) are the same event; any change of meaning is not.
    """
    canonical = json.dumps(event.model_dump(mode="json"), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def verdict(stored_hash: str | None, new_hash: str) -> Verdict:
    if stored_hash is None:
        return Verdict.NEW
    return Verdict.REPLAY if stored_hash == new_hash else Verdict.CONFLICT


def referral_id_of(event: Event) -> uuid.UUID | None:
    """The referral a consent.given will become (what a later withdrawal may name)."""
    return referral_id_for(event.event_id) if isinstance(event, ConsentGiven) else None


def accepted_result(event: Event) -> dict:
    """The response body of an accepted event, identical on every replay."""
    result: dict = {"event_id": str(event.event_id), "status": ACCEPTED}
    referral_id = referral_id_of(event)
    if referral_id is not None:
        result["referral_id"] = str(referral_id)
    return result


def error(field: str, message: str, kind: str) -> dict[str, str]:
    """One entry of the 4xx ``errors`` list; never carries a submitted value."""
    return {"field": field, "message": message, "type": kind}


def name_discriminator(errors: list[dict[str, str]]) -> list[dict[str, str]]:
    """Errors about a missing or unknown ``event_type`` name that field, not the whole body."""
    named = []
    for entry in errors:
        if entry["type"] == "union_tag_invalid":
            entry = {**entry, "field": "event_type", "message": "is not an event type this endpoint accepts"}
        elif entry["type"] == "union_tag_not_found":
            entry = {**entry, "field": "event_type"}
        named.append(entry)
    return named


def registry_errors(event: ConsentGiven | ConsentDeclined, registry: Registry) -> list[dict[str, str]]:
    """Checks that need the centre registry (which is data, so the schema cannot hold them)."""
    if isinstance(event, ConsentGiven) and event.preferred_centre is not None:
        if registry.by_slug(event.preferred_centre) is None:
            return [error("preferred_centre", "is not one of the centres in the registry", "centre_unknown")]
    return []


@dataclass(frozen=True)
class KnownReferral:
    """What the store knows about a referral_id: the case it belongs to.

    ``case_ref`` is None once the case number was erased after ``case_ref_retention_days``.
    """

    case_ref: str | None


def resolve_withdrawal(
    withdrawal: ConsentWithdrawn, known: KnownReferral | None
) -> tuple[ConsentWithdrawn | None, list[dict[str, str]]]:
    """The withdrawal as it is published (always with case_ref, the topic key), or errors.

    A withdrawal naming only the case is passed on as it is (the router decides whether it
    matches anything). One naming a referral must name one this service accepted, and if
    it names the case too, the two must agree. Once the referral's case number was erased
    (retention), the two can no longer be matched: the withdrawal must name the case alone.
    """
    if withdrawal.referral_id is None:
        return withdrawal, []
    if known is None:
        return None, [error("referral_id", "does not name a consent accepted by this service", "referral_unknown")]
    if known.case_ref is None:
        return None, [
            error(
                "referral_id",
                "is too old to withdraw by referral_id; withdraw by case_ref (without referral_id)",
                "referral_expired",
            )
        ]
    if withdrawal.case_ref is not None and withdrawal.case_ref != known.case_ref:
        return None, [error("referral_id", "belongs to another case than case_ref", "referral_case_mismatch")]
    return withdrawal.model_copy(update={"case_ref": known.case_ref}), []


# ---------------------------------------------------------------------------- relay leasing


@dataclass(frozen=True)
class OutboxRow:
    """An unsent outbox row as the relay sees it when choosing what to lease."""

    id: int
    key: str  # the Kafka key (case_ref): rows with the same key must go out in id order
    lease_owner: str | None
    lease_until: datetime | None


def choose_lease(
    rows: Sequence[OutboxRow], now: datetime, limit: int, leased_keys: Iterable[str] = ()
) -> list[int]:
    """Ids of unsent rows a relay may lease now, in outbox order.

    ``rows`` are the oldest unsent rows in id order. A row under an unexpired lease blocks
    every later row with the same key, so two relays never publish one case out of order;
    rows of other cases are free to take. This holds for the relay's own leases too: rows
    whose delivery is in doubt stay leased until the lease runs out, and are not sent twice.
    ``leased_keys`` are keys known to be under lease beyond the rows given.
    """
    blocked: set[str] = set(leased_keys)
    chosen: list[int] = []
    for row in rows:
        if len(chosen) >= limit:
            break
        leased = row.lease_owner is not None and row.lease_until is not None and row.lease_until > now
        if leased:
            blocked.add(row.key)
            continue
        if row.key in blocked:
            continue
        chosen.append(row.id)
    return chosen


def backoff_seconds(failures: int, cap: float, base: float = 0.5) -> float:
    """Exponential backoff after ``failures`` consecutive failures, capped."""
    if failures <= 0:
        return 0.0
    return min(cap, base * 2 ** min(failures - 1, 16))

