"""Recording an outcome, as a pure function: the answer, the referral's new state, the events.

A request carries an ``event_id`` (the idempotency key): the same id again is answered as
before, and the same id for something else is a conflict.  Recording the outcome the
referral already stands at is a repeat too (``domain.decide``), answered with the event
that brought it there.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from henvis.deadlines import local_date
from henvis.manual import manual_case
from henvis.schemas.events import ManualHandling, ManualReason, Outcome, ReferralOutcome
from henvis.schemas.topics import MANUAL_HANDLING, REFERRAL_OUTCOMES
from henvis.services.centre import domain
from henvis.services.centre.domain import CENTRE_NAMESPACE, Outgoing
from henvis.services.centre.domain_inbox import Referral


class EventIdConflict(Exception):
    """The event_id was already used for a different outcome or referral."""


class VersionConflict(Exception):
    """The referral changed since the version the request was made against (FHIR If-Match)."""


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
    #: the referral goes back to manual handling: so does its data key (the key store's hand-over)
    hands_over_key: bool = False


def check_version(recording: Recording, current: int, expected: int | None) -> None:
    """Refuse a recording that changes the referral when it is no longer at ``expected``.

    A repeat changes nothing, so it is answered whatever version it was made against.
    """
    if expected is not None and recording.change is not None and current != expected:
        raise VersionConflict(f"the referral is at version {current}, not {expected}")


def record_outcome(
    referral: Referral,
    request: RecordOutcome,
    earlier: EarlierOutcome | None,
    state_event_id: str | None,
    now: datetime,
) -> Recording:
    """Decide what recording ``request`` on ``referral`` does.

    ``earlier``: the outcome already recorded under the request's event_id; ``state_event_id``:
    the latest event of the outcome the referral stands at (the answer to a repeat).
    Raises :class:`EventIdConflict`, ``domain.IllegalTransition`` or ``domain.InvalidOccurredAt``.
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
        outgoing=_announcements(referral, request, now),
        audit_action=f"outcome_recorded:{request.outcome}",
        hands_over_key=request.outcome == Outcome.RETURNED_WRONG_CENTRE.value,
    )


def _unchanged(referral: Referral, request: RecordOutcome, event_id: str, outcome: str, now: datetime) -> Recording:
    status = referral.status(local_date(now))
    return Recording(Recorded(event_id, request.referral_id, outcome, status.value, created=False))


def _announcements(referral: Referral, request: RecordOutcome, now: datetime) -> tuple[Outgoing, ...]:
    outcome = ReferralOutcome(
        event_id=request.event_id,
        occurred_at=request.occurred_at,
        referral_id=uuid.UUID(request.referral_id),
        centre=request.centre,
        outcome=Outcome(request.outcome),
    )
    if request.outcome != Outcome.RETURNED_WRONG_CENTRE.value:
        return (Outgoing(REFERRAL_OUTCOMES.name, outcome),)
    # Back to manual handling for re-routing, the contact details sealed as they came: the
    # key store now releases their key to the manual-handling role instead of this centre.
    return (
        Outgoing(REFERRAL_OUTCOMES.name, outcome),
        Outgoing(MANUAL_HANDLING.name, returned_case(referral, request, now)),
    )


def returned_case(referral: Referral, request: RecordOutcome, now: datetime) -> ManualHandling:
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
        personal=referral.sealed,
    )


def undecryptable_case(referral: Referral, now: datetime) -> Outgoing:
    """The manual-handling case for a referral whose contact details do not open under the key
    the key store released for it (tampered with, truncated, or sealed under another key).

    Its id derives from the referral, so a second look never opens a second case; it carries
    ids and facts only, never the blob (the desk gets the key and the topic's copy instead).
    """
    case = manual_case(
        CENTRE_NAMESPACE,
        "undecryptable",
        referral.referral_id,
        reason=ManualReason.UNDECRYPTABLE,
        at=now,
        detail="the referral's contact details do not open under its data key (tampered, truncated or another key)",
        referral_id=uuid.UUID(referral.referral_id),
        municipality_code=referral.municipality_code,
        offence=referral.offence,
    )
    return Outgoing(MANUAL_HANDLING.name, case)
