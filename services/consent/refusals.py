"""Pure rules for refusing a request: the 4xx error entries and the reason a refusal is counted by.

An error entry names the failing field and never carries a submitted value.
"""

from __future__ import annotations

from enum import StrEnum


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


#: The reason of a refusal whose handler named none (auth, size and media-type checks).
REASON_BY_STATUS = {
    401: RejectReason.UNAUTHENTICATED,
    403: RejectReason.FORBIDDEN,
    409: RejectReason.CONFLICT,
    413: RejectReason.TOO_LARGE,
    415: RejectReason.UNSUPPORTED_MEDIA_TYPE,
    422: RejectReason.INVALID,
    503: RejectReason.UNAVAILABLE,
}


def error(field: str, message: str, kind: str) -> dict[str, str]:
    """One entry of the 4xx ``errors`` list; never carries a submitted value."""
    return {"field": field, "message": message, "type": kind}


def event_id_conflict() -> list[dict[str, str]]:
    """The errors of an event refused because its event_id names another accepted event."""
    return [error("event_id", "was already used for a different event", "event_id_conflict")]


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
