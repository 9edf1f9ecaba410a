"""What arriving messages do to the inbox, as pure functions: referrals, withdrawals, bad messages.

The worker delivers each message at least once, so every decision here is idempotent: a
second copy finds the first one's trace (the stored referral, the withdrawal tombstone) and
is a ``duplicate``, and every event derived here has an id derived from what it is about.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from henvis.manual import manual_case
from henvis.schemas.events import (
    ManualHandling,
    ManualReason,
    Outcome,
    ReferralIssued,
    ReferralOutcome,
    ReferralWithdrawn,
    derived_id,
)
from henvis.schemas.topics import MANUAL_HANDLING, REFERRAL_OUTCOMES
from henvis.services.centre.domain import CENTRE_NAMESPACE, NEW, WITHDRAWN, Outgoing

#: Withdrawal results that acknowledged the withdrawal (an outcome for the statistics).
ACKNOWLEDGED = frozenset({"erased", "tombstone"})


@dataclass(frozen=True)
class Placement:
    """Where a referral already in the inbox stands."""

    centre: str
    state: str


@dataclass(frozen=True)
class Lifecycle:
    """A referral's state as an arrival or a withdrawal writes it."""

    state: str
    last_outcome: str | None = None
    ended_at: datetime | None = None
    withdrawn_at: datetime | None = None
    #: set: the contact details are erased (at this time)
    contact_erased_at: datetime | None = None


@dataclass(frozen=True)
class Arrival:
    """What an arriving referral does: ``result`` says it for the logs and metrics."""

    #: stored, stored_withdrawn (its withdrawal came first), rerouted, duplicate or misrouted
    result: str
    #: the referral to write with this lifecycle; None writes nothing
    lifecycle: Lifecycle | None = None
    #: overwrite the row of the referral another centre returned (instead of inserting one)
    replaces_returned: bool = False
    outgoing: tuple[Outgoing, ...] = ()


@dataclass(frozen=True)
class Withdrawal:
    """What an arriving withdrawal does: ``result`` is erased, tombstone or duplicate."""

    result: str
    #: remember the withdrawal until its referral arrives (a tombstone)
    remember: bool = False
    #: the stored referral becomes this (withdrawn, contact details erased); None: untouched
    lifecycle: Lifecycle | None = None
    #: outcomes the system adds to the stored referral's history
    history: tuple[ReferralOutcome, ...] = ()
    outgoing: tuple[Outgoing, ...] = ()
    #: the access log's action, when the system touched contact details
    audit_action: str | None = None


def receive_referral(
    event: ReferralIssued, topic_centre: str, existing: Placement | None, withdrawn_at: datetime | None, now: datetime
) -> Arrival:
    """Decide what a referral arriving on ``topic_centre``'s topic does.

    ``existing``: the referral already in the inbox, if any; ``withdrawn_at``: when its
    withdrawal arrived, if that overtook it.
    """
    if event.centre != topic_centre:
        # A referral for another centre on this centre's topic: do not keep the contact
        # details here; a person re-routes it (no personal data in the case).
        return Arrival(
            "misrouted", outgoing=(Outgoing(MANUAL_HANDLING.name, misrouted_case(event, topic_centre, now)),)
        )
    rerouted = (
        existing is not None
        and existing.centre != event.centre
        and existing.state == Outcome.RETURNED_WRONG_CENTRE.value
    )
    if existing is not None and not rerouted:
        return Arrival("duplicate")
    # The withdrawal overtook the referral: store it already withdrawn and erased.
    lifecycle = Lifecycle(NEW) if withdrawn_at is None else _withdrawn(withdrawn_at, erased_at=now)
    if rerouted:
        # Returned by one centre, re-routed by the manual desk to another (both served by
        # this deployment): the referral starts afresh in the new centre's inbox.
        return Arrival("rerouted", lifecycle, replaces_returned=True)
    return Arrival("stored" if withdrawn_at is None else "stored_withdrawn", lifecycle)


def receive_withdrawal(
    event: ReferralWithdrawn, existing: Placement | None, remembered: bool, now: datetime
) -> Withdrawal:
    """Decide what a withdrawal does: erase the stored referral, or remember it until it arrives.

    ``remembered``: a tombstone of this referral's withdrawal is kept already.
    """
    referral_id = str(event.referral_id)
    if existing is None:
        if remembered:
            return Withdrawal("duplicate")
        # Nothing is stored to erase, so the withdrawal is carried out already.
        acknowledgement = withdrawal_acknowledgement(referral_id, event.centre, now)
        return Withdrawal("tombstone", remember=True, outgoing=(Outgoing(REFERRAL_OUTCOMES.name, acknowledgement),))
    if existing.state == WITHDRAWN:
        return Withdrawal("duplicate")
    acknowledgement = withdrawal_acknowledgement(referral_id, existing.centre, now)
    return Withdrawal(
        "erased",
        lifecycle=_withdrawn(now, erased_at=now),
        history=(acknowledgement,),
        outgoing=(Outgoing(REFERRAL_OUTCOMES.name, acknowledgement),),
        audit_action="contact_details_erased_withdrawal",
    )


def _withdrawn(withdrawn_at: datetime, erased_at: datetime) -> Lifecycle:
    return Lifecycle(
        WITHDRAWN,
        last_outcome=Outcome.WITHDRAWAL_ACKNOWLEDGED.value,
        ended_at=withdrawn_at,
        withdrawn_at=withdrawn_at,
        contact_erased_at=erased_at,
    )


def withdrawal_acknowledgement(referral_id: str, centre: str, now: datetime) -> ReferralOutcome:
    """The outcome telling the statistics the withdrawal is carried out (one id per referral)."""
    return ReferralOutcome(
        event_id=derived_id(CENTRE_NAMESPACE, "withdrawal-acknowledged", referral_id),
        occurred_at=now,
        referral_id=uuid.UUID(referral_id),
        centre=centre,
        outcome=Outcome.WITHDRAWAL_ACKNOWLEDGED,
    )


def misrouted_case(event: ReferralIssued, topic_centre: str, now: datetime) -> ManualHandling:
    """A manual-handling case for a referral on the wrong centre's topic (no personal data)."""
    return manual_case(
        CENTRE_NAMESPACE,
        "misrouted",
        event.event_id,
        reason=ManualReason.INVALID_EVENT,
        at=now,
        detail=f"referral for centre {event.centre} arrived on the topic of centre {topic_centre}",
        about=event,
    )


def invalid_message(where: str, detail: str, now: datetime) -> Outgoing:
    """A manual-handling case for an unreadable or unexpected message at ``where`` (topic/partition@offset).

    Never silently dropped, and never with the message's body (it may hold personal data).
    """
    case = manual_case(
        CENTRE_NAMESPACE, "invalid", where, reason=ManualReason.INVALID_EVENT, at=now, detail=f"{detail} ({where})"
    )
    return Outgoing(MANUAL_HANDLING.name, case)
