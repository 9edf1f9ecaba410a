"""The centre inbox's rules, as pure functions: outcome state machine, status, deadlines.

No I/O here: the store, the API and the web page all ask these functions what is allowed,
so a caseworker sees exactly the buttons the API would accept.

States of a referral (the last state-changing outcome, or ``new``/``withdrawn``):

* ``new``                 — received, nobody has tried to call yet;
* ``contact_attempted``   — called, no answer (may be recorded again and again);
* ``contacted``           — spoke to the person;
* ``first_interview_held``— the first conversation with a counsellor took place;
* ``follow_up_accepted``  — the person said yes to more than the first conversation (closed);
* ``unreachable``         — gave up reaching the person (closed, but see below);
* ``declined_by_person``  — the person said no (closed, final);
* ``returned_wrong_centre``— not this centre's resident; back to manual handling (final);
* ``withdrawn``           — consent withdrawn, contact details erased (final).

Decisions a caseworker would expect:

* ``first_interview_held`` may follow ``new`` or ``contact_attempted`` directly: one call
  can reach the person and hold/book the conversation. The researchers' first-interview
  rate counts referrals with a ``first_interview_held``, so no ``contacted`` is required.
* ``follow_up_accepted`` needs a ``first_interview_held`` before it.
* ``unreachable`` closes the referral, but a person who calls back later can still be
  recorded as ``contacted`` or ``first_interview_held`` (it reopens the referral) — losing a
  late first interview would make the researchers' rate wrong.
* nothing follows ``declined_by_person``, ``follow_up_accepted``, ``returned_wrong_centre``
  or a withdrawal.
* ``withdrawal_acknowledged`` is recorded only by the system when it erases the details.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from enum import StrEnum

from henvis.deadlines import local_date
from henvis.schemas.events import Event, Outcome

#: Namespace for ids the centre derives (acknowledgements, manual-handling cases), so a
#: redelivered Kafka message derives the same id and the outbox refuses the duplicate.
CENTRE_NAMESPACE = uuid.UUID("0c3b7a52-3f7e-5d3e-8b6e-5a1c4e2d9f01")

#: The actor named in the access log and the outcome history for what the inbox does itself.
SYSTEM_ACTOR = "system"

NEW = "new"
WITHDRAWN = "withdrawn"

#: Outcomes a caseworker (or a centre's case system) may record, in the order of the buttons.
RECORDABLE: tuple[Outcome, ...] = (
    Outcome.CONTACT_ATTEMPTED,
    Outcome.CONTACTED,
    Outcome.FIRST_INTERVIEW_HELD,
    Outcome.FOLLOW_UP_ACCEPTED,
    Outcome.UNREACHABLE,
    Outcome.DECLINED_BY_PERSON,
    Outcome.RETURNED_WRONG_CENTRE,
)

_BEFORE_CONTACT = (
    Outcome.CONTACT_ATTEMPTED,
    Outcome.CONTACTED,
    Outcome.FIRST_INTERVIEW_HELD,
    Outcome.UNREACHABLE,
    Outcome.DECLINED_BY_PERSON,
    Outcome.RETURNED_WRONG_CENTRE,
)

#: state -> outcomes that may be recorded next
TRANSITIONS: dict[str, tuple[Outcome, ...]] = {
    NEW: _BEFORE_CONTACT,
    Outcome.CONTACT_ATTEMPTED.value: _BEFORE_CONTACT,
    Outcome.CONTACTED.value: (
        Outcome.FIRST_INTERVIEW_HELD,
        Outcome.UNREACHABLE,
        Outcome.DECLINED_BY_PERSON,
        Outcome.RETURNED_WRONG_CENTRE,
    ),
    Outcome.FIRST_INTERVIEW_HELD.value: (Outcome.FOLLOW_UP_ACCEPTED, Outcome.DECLINED_BY_PERSON),
    Outcome.UNREACHABLE.value: (Outcome.CONTACTED, Outcome.FIRST_INTERVIEW_HELD),
    Outcome.FOLLOW_UP_ACCEPTED.value: (),
    Outcome.DECLINED_BY_PERSON.value: (),
    Outcome.RETURNED_WRONG_CENTRE.value: (),
    WITHDRAWN: (),
}

CLOSED_STATES = frozenset(
    {
        Outcome.FOLLOW_UP_ACCEPTED.value,
        Outcome.UNREACHABLE.value,
        Outcome.DECLINED_BY_PERSON.value,
        Outcome.RETURNED_WRONG_CENTRE.value,
    }
)

#: States after which nothing more happens to a referral but the retention purge.
ENDED_STATES = CLOSED_STATES | {WITHDRAWN}

#: States in which the first contact attempt has been made (the contact deadline is met).
_CONTACT_MADE = frozenset(TRANSITIONS) - {NEW}
#: States in which the first interview has taken place (the treatment deadline is met).
_INTERVIEW_HELD = frozenset({Outcome.FIRST_INTERVIEW_HELD.value, Outcome.FOLLOW_UP_ACCEPTED.value})


class Status(StrEnum):
    OPEN = "open"
    OVERDUE = "overdue"
    CLOSED = "closed"
    WITHDRAWN = "withdrawn"


LIST_FILTERS = ("open", "overdue", "closed", "withdrawn", "all")

#: Outcomes recorded again are new events only when repeating them means something.
REPEATABLE = frozenset({Outcome.CONTACT_ATTEMPTED})


@dataclass(frozen=True)
class Outgoing:
    """An event to publish through the outbox, and its topic (without the test prefix)."""

    topic_base: str
    event: Event


class IllegalTransition(Exception):
    """The outcome is not allowed now; ``str(exc)`` is a plain sentence for the caseworker."""


class InvalidOccurredAt(Exception):
    """``occurred_at`` is outside what can be true; names the field, never the value."""


def next_outcomes(state: str) -> list[str]:
    """The outcomes that may be recorded next, in button order."""
    return [outcome.value for outcome in TRANSITIONS.get(state, ())]


def is_closed(state: str) -> bool:
    """Closed by an outcome (withdrawn is not closed: it is its own status)."""
    return state in CLOSED_STATES


def status_of(state: str, contact_due_by: date, treatment_due_by: date, today: date) -> Status:
    """Inbox status: withdrawn, closed, overdue (a deadline passed with its step undone) or open."""
    if state == WITHDRAWN:
        return Status.WITHDRAWN
    if state in CLOSED_STATES:
        return Status.CLOSED
    if state not in _CONTACT_MADE and today > contact_due_by:
        return Status.OVERDUE
    if state not in _INTERVIEW_HELD and today > treatment_due_by:
        return Status.OVERDUE
    return Status.OPEN


def matches_filter(status: Status, wanted: str) -> bool:
    """``open`` includes overdue referrals (they are open, just late)."""
    if wanted == "all":
        return True
    if wanted == "open":
        return status in (Status.OPEN, Status.OVERDUE)
    return status.value == wanted


def contact_pending(state: str) -> bool:
    """The contact deadline still applies: the referral is open and nobody has tried to reach the person."""
    return state not in ENDED_STATES and state not in _CONTACT_MADE


def interview_pending(state: str) -> bool:
    """The treatment deadline still applies: the referral is open and no first interview has taken place."""
    return state not in ENDED_STATES and state not in _INTERVIEW_HELD


def current_deadline(state: str, contact_due_by: date, treatment_due_by: date) -> date:
    """The deadline that matters now: the contact deadline until contact is made, then treatment."""
    return contact_due_by if state not in _CONTACT_MADE else treatment_due_by


@dataclass(frozen=True)
class Decision:
    """What recording an outcome means: a move to ``new_state``, or an idempotent repeat."""

    new_state: str
    repeat: bool


def decide(state: str, outcome: str) -> Decision:
    """Check ``outcome`` against the state machine; raise :class:`IllegalTransition` if not allowed.

    Recording the outcome the referral already stands at (a double click, a retried
    request) is an idempotent repeat, except for outcomes whose repetition means something
    (another contact attempt).
    """
    try:
        wanted = Outcome(outcome)
    except ValueError:
        raise IllegalTransition(f"'{outcome}' is not an outcome a centre can record.") from None
    if wanted not in RECORDABLE:
        raise IllegalTransition("A withdrawal is acknowledged by the system, not recorded by a caseworker.")
    if wanted.value == state and wanted not in REPEATABLE:
        return Decision(new_state=state, repeat=True)
    if wanted not in TRANSITIONS.get(state, ()):
        raise IllegalTransition(_illegal_sentence(state, wanted))
    return Decision(new_state=wanted.value, repeat=False)


def _illegal_sentence(state: str, wanted: Outcome) -> str:
    if state == WITHDRAWN:
        return "The person has withdrawn consent, so no outcome can be recorded for this referral."
    if state in (
        Outcome.DECLINED_BY_PERSON.value,
        Outcome.FOLLOW_UP_ACCEPTED.value,
        Outcome.RETURNED_WRONG_CENTRE.value,
    ):
        return f"The referral is closed ({state}), so nothing more can be recorded for it."
    if wanted is Outcome.FOLLOW_UP_ACCEPTED:
        return "A follow-up can only be recorded after the first interview has been held."
    allowed = ", ".join(next_outcomes(state)) or "nothing"
    return f"'{wanted.value}' cannot follow '{state}'; allowed next: {allowed}."


#: How far into the future a clock may be off before occurred_at is refused.
FUTURE_SKEW = timedelta(minutes=5)


def check_occurred_at(occurred_at: datetime, charged_on: date, now: datetime) -> None:
    """An outcome cannot happen in the future nor before the person was charged.

    The lower bound is the charge date, not the issue time: the pilot replay records
    historical outcomes (2020–2021) for referrals issued today, and a caseworker may record
    yesterday's call.
    """
    if occurred_at.tzinfo is None:
        raise InvalidOccurredAt("occurred_at must have a timezone")
    if occurred_at > now + FUTURE_SKEW:
        raise InvalidOccurredAt("occurred_at must not be in the future")
    if local_date(occurred_at) < charged_on:
        raise InvalidOccurredAt("occurred_at must not be before the referral's charge date")


def purge_due(state: str, closed_or_withdrawn_at: datetime | None, now: datetime, retention_days: int) -> bool:
    """Contact details are erased ``retention_days`` after a referral closed or was withdrawn."""
    if closed_or_withdrawn_at is None or state not in ENDED_STATES:
        return False
    return now - closed_or_withdrawn_at >= timedelta(days=retention_days)
