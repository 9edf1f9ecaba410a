"""Recording an outcome, as a pure function: the answer, the referral's new state, the events.

A request carries an ``event_id`` (the idempotency key): the same id again is answered as
before, and the same id for something else is a conflict.  Recording the outcome the
referral already stands at is a repeat too (``domain.decide``), answered with the event
that brought it there.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import datetime

from henvis.deadlines import local_date
from henvis.manual import manual_case
from henvis.schemas.events import ManualHandling, ManualReason, Outcome, ReferralOutcome
from henvis.schemas.topics import MANUAL_HANDLING, REFERRAL_OUTCOMES
from henvis.services.centre import domain
from henvis.services.centre.domain import CENTRE_NAMESPACE, Outgoing, Sealer
from henvis.services.centre.domain_inbox import Referral


class EventIdConflict(Exception):
    """The event_id was already used for a different outcome or referral."""


@dataclass(frozen=True)
class RecordOutcome:
    """A caseworker's (or a case system's) request to record an outcome."""

    centre: str
    referral_id: str
    outcome: str
    actor: str
    actor_kind: str
    occurred_at: datetime
    event_id: uuid.UUID


@dataclass(frozen=True)
class EarlierOutcome:
    """The outcome recorded before under the request's event_id."""

    event_id: str
    referral_id: str
    outcome: str


@dataclass(frozen=True)
class Recorded:
    """The answer to a request: the outcome's event, the referral's status, and whether it is new."""

    event_id: str
    referral_id: str
    outcome: str
    status: str
    created: bool

    def as_json(self) -> dict:
        """The API's answer body."""
        return {
            "event_id": self.event_id,
            "referral_id": self.referral_id,
            "outcome": self.outcome,
            "status": self.status,
        }


@dataclass(frozen=True)
class StateChange:
    """The referral's columns a new outcome sets."""

    state: str
    last_outcome: str
    #: when it closed (the retention clock starts); None while open, also after a reopening
    ended_at: datetime | None


@dataclass(frozen=True)
class Recording:
    """What a request changes: nothing (``change`` None, a repeat) or the referral, history and outbox."""

    recorded: Recorded
    change: StateChange | None = None
    outgoing: tuple[Outgoing, ...] = ()
    audit_action: str | None = None


def record_outcome(
    referral: Referral,
    request: RecordOutcome,
    earlier: EarlierOutcome | None,
    state_event_id: str | None,
    now: datetime,
    seal: Sealer | None = None,
) -> Recording:
    """Decide what recording ``request`` on ``referral`` does.

    ``earlier``: the outcome already recorded under the request's event_id; ``state_event_id``:
    the latest event of the outcome the referral stands at (the answer to a repeat).
    Raises :class:`EventIdConflict`, ``domain.IllegalTransition`` or ``domain.InvalidOccurredAt``.
    ``seal`` encrypts the contact details for the manual-handling role when a referral is
    returned to it; without it the case carries no contact details.
    """
    if earlier is not None:
        if earlier.referral_id != request.referral_id or earlier.outcome != request.outcome:
            raise EventIdConflict(str(request.event_id))
        return _unchanged(referral, request, earlier.event_id, earlier.outcome, now)
    decision = domain.decide(referral.state, request.outcome)
    if decision.repeat:
        # The referral stands at this outcome because it was recorded (the state and the
        # outcome's row are written together), so its event exists.
        assert state_event_id is not None
        return _unchanged(referral, request, state_event_id, request.outcome, now)
    domain.check_occurred_at(request.occurred_at, referral.charged_on, now)
    status = domain.status_of(decision.new_state, referral.contact_due_by, referral.treatment_due_by, local_date(now))
    return Recording(
        recorded=Recorded(str(request.event_id), request.referral_id, request.outcome, status.value, created=True),
        change=StateChange(
            state=decision.new_state,
            last_outcome=request.outcome,
            ended_at=now if domain.is_closed(decision.new_state) else None,
        ),
        outgoing=_announcements(referral, request, now, seal),
        audit_action=f"outcome_recorded:{request.outcome}",
    )


def _unchanged(referral: Referral, request: RecordOutcome, event_id: str, outcome: str, now: datetime) -> Recording:
    status = referral.status(local_date(now))
    return Recording(Recorded(event_id, request.referral_id, outcome, status.value, created=False))


def _announcements(
    referral: Referral, request: RecordOutcome, now: datetime, seal: Sealer | None
) -> tuple[Outgoing, ...]:
    outcome = ReferralOutcome(
        event_id=request.event_id,
        occurred_at=request.occurred_at,
        referral_id=uuid.UUID(request.referral_id),
        centre=request.centre,
        outcome=Outcome(request.outcome),
    )
    if request.outcome != Outcome.RETURNED_WRONG_CENTRE.value:
        return (Outgoing(REFERRAL_OUTCOMES.name, outcome),)
    # Back to manual handling for re-routing. Contact details travel only sealed for the
    # manual-handling role; without a key the desk finds the case by referral id.
    return (
        Outgoing(REFERRAL_OUTCOMES.name, outcome),
        Outgoing(MANUAL_HANDLING.name, returned_case(referral, request, now, seal)),
    )


def returned_case(referral: Referral, request: RecordOutcome, now: datetime, seal: Sealer | None) -> ManualHandling:
    """The manual-handling case for a referral its centre returned as not its resident's."""
    return manual_case(
        CENTRE_NAMESPACE,
        "returned",
        request.event_id,
        reason=ManualReason.RETURNED_WRONG_CENTRE,
        at=now,
        detail=f"returned by centre {request.centre}: the person is not this centre's resident",
        referral_id=uuid.UUID(request.referral_id),
        municipality_code=referral.municipality_code,
        offence=referral.offence,
        sealed_payload=sealed_contact_details(referral, seal),
    )


def sealed_contact_details(referral: Referral, seal: Sealer | None) -> str | None:
    """The referral's contact details encrypted for the manual-handling role (None: no key, or erased)."""
    contact = referral.contact
    if seal is None or contact is None:
        return None
    payload = {
        "referral_id": referral.referral_id,
        "case_ref": contact.case_ref,
        "offence": referral.offence,
        "charged_on": referral.charged_on.isoformat(),
        "municipality_code": referral.municipality_code,
        "person": {
            "full_name": contact.full_name,
            "phone": contact.phone,
            "email": contact.email,
            "postal_address": contact.postal_address(),
            "cpr": contact.cpr,
        },
    }
    return seal(json.dumps(payload).encode())
