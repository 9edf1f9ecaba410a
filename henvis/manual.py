"""Manual-handling cases (``henvis.manual.v2``): the one way a service opens one.

A case's id derives from the service's namespace and what it is about, so a retry or a
replay opens the same case, and the manual-handling desk sees it once.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from henvis.schemas.events import Event, ManualHandling, ManualReason, derived_id

#: What a case copies from the event it is about, when that event has it.
_FACTS = ("referral_id", "municipality_code", "offence")


def manual_case(
    namespace: uuid.UUID,
    *id_parts: object,
    reason: ManualReason,
    at: datetime,
    detail: str,
    about: Event | None = None,
    **fields: Any,
) -> ManualHandling:
    """A case with id ``derived_id(namespace, *id_parts)``.

    ``about``: the event the case concerns; its id and type, and its referral id,
    municipality code and offence where it has them, go into the case.  ``fields`` add to or
    override those (``sealed_payload``, ``referral_id`` ...).  ``detail`` is a fixed
    explanation, never personal data; it is cut to the field's 500 characters.
    """
    known: dict[str, Any] = {}
    if about is not None:
        known = {"source_event_id": about.event_id, "source_event_type": getattr(about, "event_type", None)}
        known.update({name: value for name in _FACTS if (value := getattr(about, name, None)) is not None})
    return ManualHandling(
        event_id=derived_id(namespace, *id_parts),
        occurred_at=at,
        reason=reason,
        detail=detail[:500],
        **{**known, **fields},
    )
