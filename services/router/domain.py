"""Routing decisions: pure functions from one input message (and the case's state) to the
messages the router must publish and the state it must remember.  No I/O, no clock, no
Kafka: the adapter (``app.py``) passes in ``now`` and the registry.

The router never sees personal data: a consent's case number and contact details are sealed
under its referral's data key (``personal``), and the router copies that blob unopened into
the referral (or the manual-handling case) it issues.

Everything the router emits has a deterministic ``event_id`` derived from the input's
``event_id``, so when at-least-once delivery makes the router process a message twice, the
second copy of every output is recognisably the same event and downstream consumers
(centre inbox, stats) drop it by id.

State is kept per *case* (table key = the case pseudonym the consent service computed, see
:func:`case_key`), and holds no personal data: referral ids, centre slugs, offence, municipality code, the
event ids already processed, and a pending withdrawal.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from henvis.deadlines import local_date
from henvis.manual import manual_case
from henvis.registry import Registry, ToCentre
from henvis.schemas.errors import safe_errors
from henvis.schemas.events import (
    EVENT_TYPES,
    ConsentDeclinedV2,
    ConsentGivenV2,
    ConsentWithdrawnV2,
    Decision,
    Event,
    ManualHandling,
    ManualReason,
    Offence,
    ReferralFact,
    ReferralIssued,
    ReferralWithdrawn,
    WithdrawalReason,
    derived_id,
    parse_event,
    referral_id_for,
)
from henvis.schemas.topics import CONSENT_DECISIONS, MANUAL_HANDLING, REFERRAL_FACTS

#: Namespace for the ids of everything the router derives from an input event.
ROUTER_NAMESPACE = uuid.UUID("0b7f3a52-3c1e-5b8a-8d6e-7a4f2c9e1d35")

_ACCEPTED_ON_TOPIC = tuple(CONSENT_DECISIONS.messages)


def case_key(case_pseudonym: str) -> str:
    """Table key of a case: its keyed pseudonym (an HMAC of the case number under the consent
    service's secret), so the changelog topic (compacted, kept indefinitely) never holds a
    police case number, nor a hash anyone could reverse by trying case numbers."""
    return "case:" + case_pseudonym


# ---------------------------------------------------------------- state


class ReferralRecord(BaseModel):
    """What the router remembers of one accepted consent (no personal data)."""

    model_config = ConfigDict(extra="ignore")

    referral_id: uuid.UUID
    centre: str | None = None  # None: the case went to manual handling
    offence: Offence | None = None
    municipality_code: str | None = None
    withdrawn: bool = False


class PendingWithdrawal(BaseModel):
    """A withdrawal that arrived before the consent it withdraws."""

    model_config = ConfigDict(extra="ignore")

    event_id: uuid.UUID
    received_at: datetime  # the router's clock: how long we have waited, not when it happened
    occurred_at: datetime
    referral_id: uuid.UUID | None = None
    reason: WithdrawalReason | None = None


class CaseState(BaseModel):
    """Everything the router remembers about one case, stored as JSON in the router's changelog."""

    model_config = ConfigDict(extra="ignore")

    #: Input partition the case lives on: the expiry sweep of a partition only touches its own.
    partition: int | None = None
    # default_factory, not ``= []``: pydantic deep-copies a literal default on every instance.
    seen_event_ids: list[uuid.UUID] = Field(default_factory=list)
    referrals: list[ReferralRecord] = Field(default_factory=list)
    pending_withdrawal: PendingWithdrawal | None = None

    def has_seen(self, event_id: uuid.UUID) -> bool:
        return event_id in self.seen_event_ids

    def seen(self, event_id: uuid.UUID, **changes) -> CaseState:
        """A copy that has seen ``event_id``, with ``changes`` applied."""
        return self.model_copy(update={"seen_event_ids": [*self.seen_event_ids, event_id], **changes})


# ---------------------------------------------------------------- outputs


@dataclass(frozen=True)
class Output:
    """One message to publish: catalogue topic base name, key and event."""

    topic: str
    key: bytes
    event: Event


@dataclass
class Result:
    """What handling one message decided."""

    outputs: list[Output] = field(default_factory=list)
    #: table key -> new state (written only after every output is acknowledged)
    state: dict[str, CaseState] = field(default_factory=dict)
    duplicate: bool = False

    def referrals(self) -> list[ReferralIssued]:
        return [out.event for out in self.outputs if isinstance(out.event, ReferralIssued)]

    def manual(self) -> list[ManualHandling]:
        return [out.event for out in self.outputs if isinstance(out.event, ManualHandling)]


def _out(topic: str, event: Event) -> Output:
    return Output(topic=topic, key=event.kafka_key(), event=event)


def _fact(event: ReferralFact) -> Output:
    return _out(REFERRAL_FACTS.name, event)


def _manual(event: ManualHandling) -> Output:
    return _out(MANUAL_HANDLING.name, event)


# ---------------------------------------------------------------- the entry point


@dataclass(frozen=True)
class Context:
    registry: Registry
    now: datetime
    #: the input partition the message came from (stored with the state)
    partition: int | None = None


def state_keys_for(event: Event) -> list[str]:
    """Table keys :func:`decide` needs to see for ``event``."""
    if isinstance(event, (ConsentGivenV2, ConsentDeclinedV2, ConsentWithdrawnV2)):
        return [case_key(event.case_pseudonym)]
    return []


def invalid_message(raw: bytes | None, ctx: Context, detail: str, source: Event | None = None) -> Result:
    """A message the router cannot route: to manual handling, with its ids and never its body
    (a message that does not parse may hold personal data in plain text)."""
    source_id: uuid.UUID | None
    if source is not None:
        source_id, source_type = source.event_id, getattr(source, "event_type", None)
    else:
        source_id, source_type = _best_effort_id(raw), _best_effort_type(raw)
    event = manual_case(
        ROUTER_NAMESPACE,
        source_id or _raw_fingerprint(raw),
        ManualReason.INVALID_EVENT.value,
        reason=ManualReason.INVALID_EVENT,
        at=ctx.now,
        detail=detail,
        source_event_id=source_id,
        source_event_type=source_type,
    )
    return Result(outputs=[_manual(event)])


def handle_message(raw: bytes | None, states: Callable[[str], CaseState | None], ctx: Context) -> Result:
    """Decide what one raw message from ``consent.decisions.v2`` becomes.

    ``states(key)`` returns the stored state of a table key (or None).
    """
    if raw is None:
        return invalid_message(raw, ctx, "empty message")
    try:
        event = parse_event(raw)
    except ValidationError as exc:
        fields = sorted({error["field"] for error in safe_errors(exc)})
        return invalid_message(raw, ctx, "invalid fields: " + ", ".join(fields))
    if not isinstance(event, _ACCEPTED_ON_TOPIC):
        return invalid_message(raw, ctx, f"event type does not belong on {CONSENT_DECISIONS.name}", source=event)
    return decide(event, {key: states(key) for key in state_keys_for(event)}, ctx, raw)


def decide(event: Event, states: dict[str, CaseState | None], ctx: Context, raw: bytes | None = None) -> Result:
    """Decide what a parsed consent-topic event becomes, given the states of its keys."""
    if isinstance(event, ConsentGivenV2):
        return _consent_given(event, states, ctx)
    if isinstance(event, ConsentDeclinedV2):
        return _consent_declined(event, states, ctx)
    if isinstance(event, ConsentWithdrawnV2):
        return _consent_withdrawn(event, states, ctx)
    return invalid_message(raw, ctx, f"event type does not belong on {CONSENT_DECISIONS.name}", source=event)


# ---------------------------------------------------------------- consent.given


def _consent_given(event: ConsentGivenV2, states: dict[str, CaseState | None], ctx: Context) -> Result:
    key = case_key(event.case_pseudonym)
    state = states.get(key) or CaseState(partition=ctx.partition)
    if state.has_seen(event.event_id):
        return Result(duplicate=True)
    referral_id = referral_id_for(event.event_id)

    # A withdrawal of this case that arrived first.
    pending = state.pending_withdrawal
    if pending is not None and pending.referral_id not in (None, referral_id):
        pending = None  # it names another referral of this case

    route = ctx.registry.route(event.preferred_centre, event.municipality_code)
    centre = route.centre if isinstance(route, ToCentre) else None
    decided_on = local_date(event.occurred_at)
    outputs: list[Output] = []
    contact_due_by = treatment_due_by = None
    if isinstance(route, ToCentre):
        contact_due_by = route.centre.contact_due_by(event.occurred_at)
        treatment_due_by = route.centre.treatment_due_by(event.occurred_at)
        if pending is None:
            # Withdrawn before it was routed: the centre never receives the contact details.
            outputs.append(
                _out(
                    route.centre.topic_base,
                    ReferralIssued(
                        event_id=derived_id(ROUTER_NAMESPACE, referral_id, "issued"),
                        occurred_at=event.occurred_at,
                        referral_id=referral_id,
                        consent_event_id=event.event_id,
                        centre=route.centre.slug,
                        routed_by=route.routed_by,
                        offence=event.offence,
                        charged_on=event.charged_on,
                        municipality_code=event.municipality_code,
                        personal=event.personal,
                        contact_due_by=contact_due_by,
                        treatment_due_by=treatment_due_by,
                        issued_at=ctx.now,
                    ),
                )
            )
    else:
        outputs.append(
            _manual(
                manual_case(
                    ROUTER_NAMESPACE,
                    event.event_id,
                    route.reason.value,
                    reason=route.reason,
                    at=ctx.now,
                    detail=route.detail
                    if pending is None
                    else f"{route.detail}; consent already withdrawn, do not contact",
                    about=event,
                    referral_id=referral_id,
                    # The desk gets the key for this referral from the key store; withdrawn: nothing.
                    personal=None if pending is not None else event.personal,
                )
            )
        )
    # Every yes is counted, also the ones a person must route by hand.
    outputs.append(
        _fact(
            ReferralFact(
                event_id=derived_id(ROUTER_NAMESPACE, referral_id, "fact-accepted"),
                occurred_at=event.occurred_at,
                referral_id=referral_id,
                decision=Decision.ACCEPTED,
                offence=event.offence,
                municipality_code=event.municipality_code,
                centre=centre.slug if centre else None,
                decided_on=decided_on,
                contact_due_by=contact_due_by,
                treatment_due_by=treatment_due_by,
            )
        )
    )
    record = ReferralRecord(
        referral_id=referral_id,
        centre=centre.slug if centre else None,
        offence=event.offence,
        municipality_code=event.municipality_code,
        withdrawn=pending is not None,
    )
    if pending is not None:
        outputs.append(_withdrawn_fact(record, pending.occurred_at, centre.slug if centre else None))
    new_state = state.seen(
        event.event_id,
        partition=state.partition if state.partition is not None else ctx.partition,
        referrals=[*state.referrals, record],
        pending_withdrawal=None if pending is not None else state.pending_withdrawal,
    )
    return Result(outputs=outputs, state={key: new_state})


def _withdrawn_fact(record: ReferralRecord, withdrawn_at: datetime, centre: str | None) -> Output:
    return _fact(
        ReferralFact(
            event_id=derived_id(ROUTER_NAMESPACE, record.referral_id, "fact-withdrawn"),
            occurred_at=withdrawn_at,
            referral_id=record.referral_id,
            decision=Decision.WITHDRAWN,
            offence=record.offence,
            municipality_code=record.municipality_code,
            centre=centre,
            decided_on=local_date(withdrawn_at),
        )
    )


# ---------------------------------------------------------------- consent.declined


def _consent_declined(event: ConsentDeclinedV2, states: dict[str, CaseState | None], ctx: Context) -> Result:
    key = case_key(event.case_pseudonym)
    state = states.get(key) or CaseState(partition=ctx.partition)
    if state.has_seen(event.event_id):
        return Result(duplicate=True)
    fact = ReferralFact(
        event_id=derived_id(ROUTER_NAMESPACE, event.event_id, "fact-declined"),
        occurred_at=event.occurred_at,
        # The id the referral would have had: stats count each decision once.
        referral_id=referral_id_for(event.event_id),
        decision=Decision.DECLINED,
        offence=event.offence,
        municipality_code=event.municipality_code,
        decided_on=local_date(event.occurred_at),
    )
    new_state = state.seen(event.event_id)
    if new_state.partition is None:
        new_state.partition = ctx.partition
    return Result(outputs=[_fact(fact)], state={key: new_state})


# ---------------------------------------------------------------- consent.withdrawn


def _withdrawal_key(event: ConsentWithdrawnV2) -> str:
    """The key of the case a withdrawal is about (the consent service always names it)."""
    return case_key(event.case_pseudonym)


def _consent_withdrawn(event: ConsentWithdrawnV2, states: dict[str, CaseState | None], ctx: Context) -> Result:
    key = _withdrawal_key(event)
    state = states.get(key) or CaseState(partition=ctx.partition)
    if state.has_seen(event.event_id):
        return Result(duplicate=True)

    targets = [
        record
        for record in state.referrals
        if not record.withdrawn and (event.referral_id is None or record.referral_id == event.referral_id)
    ]
    already_withdrawn = [
        record
        for record in state.referrals
        if record.withdrawn and (event.referral_id is None or record.referral_id == event.referral_id)
    ]
    new_state = state.seen(event.event_id)
    if new_state.partition is None:
        new_state.partition = ctx.partition
    if not targets:
        if already_withdrawn:
            # A second withdrawal of the same referral: nothing left to do.
            return Result(state={key: new_state})
        new_state.pending_withdrawal = PendingWithdrawal(
            event_id=event.event_id,
            received_at=ctx.now,
            occurred_at=event.occurred_at,
            referral_id=event.referral_id,
            reason=event.reason,
        )
        return Result(state={key: new_state})

    outputs: list[Output] = []
    records = []
    for record in state.referrals:
        if record in targets:
            outputs.extend(_withdraw(record, event, ctx))
            record = record.model_copy(update={"withdrawn": True})
        records.append(record)
    new_state.referrals = records
    return Result(outputs=outputs, state={key: new_state})


def _withdraw(record: ReferralRecord, event: ConsentWithdrawnV2, ctx: Context) -> list[Output]:
    outputs = []
    if record.centre is not None:
        centre = ctx.registry.by_slug(record.centre)
        topic = centre.topic_base if centre else f"referrals.{record.centre}.v1"
        outputs.append(
            _out(
                topic,
                ReferralWithdrawn(
                    event_id=derived_id(ROUTER_NAMESPACE, record.referral_id, "withdrawn"),
                    occurred_at=event.occurred_at,
                    referral_id=record.referral_id,
                    centre=record.centre,
                    reason=event.reason,
                ),
            )
        )
    else:
        # The case is in manual handling: its key is destroyed already (the withdrawal did that
        # before it was published); the desk must erase whatever it copied and not call.
        outputs.append(
            _manual(
                manual_case(
                    ROUTER_NAMESPACE,
                    event.event_id,
                    f"withdrawn-in-manual:{record.referral_id}",
                    reason=ManualReason.WITHDRAWAL_UNMATCHED,
                    at=ctx.now,
                    detail="consent withdrawn for a case in manual handling: erase its contact details, do not contact",
                    about=event,
                    referral_id=record.referral_id,
                    municipality_code=record.municipality_code,
                    offence=record.offence,
                )
            )
        )
    outputs.append(_withdrawn_fact(record, event.occurred_at, record.centre))
    return outputs


# ---------------------------------------------------------------- expiry of pending withdrawals


def expire_pending(key: str, state: CaseState, ctx: Context, wait: timedelta) -> Result | None:
    """A pending withdrawal older than ``wait`` goes to manual handling; None if not due."""
    pending = state.pending_withdrawal
    if pending is None or ctx.now - pending.received_at < wait:
        return None
    event = manual_case(
        ROUTER_NAMESPACE,
        pending.event_id,
        ManualReason.WITHDRAWAL_UNMATCHED.value,
        reason=ManualReason.WITHDRAWAL_UNMATCHED,
        at=ctx.now,
        detail="a withdrawal arrived but no consent for its case did within the waiting time",
        source_event_id=pending.event_id,
        source_event_type=ConsentWithdrawnV2.model_fields["event_type"].default,
        referral_id=pending.referral_id,
    )
    return Result(outputs=[_manual(event)], state={key: state.model_copy(update={"pending_withdrawal": None})})


# ---------------------------------------------------------------- helpers


def _best_effort_id(raw: bytes | None) -> uuid.UUID | None:
    """The event_id of an invalid message if it has a readable one (it is not personal data)."""
    try:
        data = json.loads(raw) if raw is not None else None
        return uuid.UUID(str(data["event_id"])) if isinstance(data, dict) else None
    except (ValueError, KeyError, TypeError, UnicodeDecodeError):
        return None


def _best_effort_type(raw: bytes | None) -> str | None:
    """The event_type of an invalid message, only if it is one of ours (never free text)."""
    try:
        data = json.loads(raw) if raw is not None else None
    except (ValueError, UnicodeDecodeError):
        return None
    value = data.get("event_type") if isinstance(data, dict) else None
    return value if value in EVENT_TYPES else None


def _raw_fingerprint(raw: bytes | None) -> str:
    return hashlib.sha256(raw or b"").hexdigest()
