"""Pure rules of accepting an event: idempotency, what is stored, registry checks, withdrawals.

No I/O here: the routes (``routes.py``) and the store (``store.py``) call these functions
with what they read, so every rule is testable without a database. The rules of refusing
a request are in ``refusals.py``, those of publishing the outbox in ``delivery.py``.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from henvis.registry import Registry
from henvis.schemas.events import (
    ConsentDeclined,
    ConsentDeclinedV2,
    ConsentGiven,
    ConsentGivenV2,
    ConsentWithdrawn,
    ConsentWithdrawnV2,
    Event,
    PersonalData,
    referral_id_for,
)
from henvis.services.consent import domain_keys
from henvis.services.consent.domain_keys import DataProtection, NewDataKey, WithdrawnKeys
from henvis.services.consent.refusals import error
from henvis.shredding import CasePseudonyms, seal_personal_data

ACCEPTED = "accepted"

#: What the police endpoints accept: every one of these defines its ``event_type``.
PoliceEvent = ConsentGiven | ConsentDeclined | ConsentWithdrawn


class Verdict(StrEnum):
    """What to do with an event given what the store already holds under its event_id."""

    NEW = "new"  # first time: store it, answer 202
    REPLAY = "replay"  # the same event again: answer 200 with the original result
    CONFLICT = "conflict"  # another event under a known event_id: answer 409


def canonical_hash(event: Event) -> str:
    """SHA-256 of the parsed event in canonical JSON.

    Two bodies that differ only in key order, whitespace or phone formatting
    (``12 34 56 78`` vs ``+4512345678``) are the same event; any change of meaning is not.
    """
    canonical = json.dumps(event.model_dump(mode="json"), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def verdict(stored_hash: str | None, new_hash: str) -> Verdict:
    """New when nothing is stored under the event_id, a replay when the same event is."""
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


# ---------------------------------------------------------------------------- acceptance


@dataclass(frozen=True)
class EventRecord:
    """The idempotency record of an accepted event; no personal data, the case by its pseudonym."""

    event_id: str
    event_type: str
    body_sha256: str
    case_pseudonym: str
    referral_id: str | None
    client_name: str
    received_at: datetime


@dataclass(frozen=True)
class OutboxEntry:
    """The Kafka record the relay will publish for an accepted event (personal data sealed)."""

    event_id: str
    kafka_key: str
    payload: str
    created_at: datetime


@dataclass(frozen=True)
class NewEvent:
    """What a new event is stored as, in one transaction: its record and outbox row, and
    for a consent its data key, for a withdrawal the keys it destroys."""

    record: EventRecord
    entry: OutboxEntry
    data_key: NewDataKey | None = None
    withdrawn_keys: WithdrawnKeys | None = None


@dataclass(frozen=True)
class Acceptance:
    """The verdict on a submitted event and, for a new one, what to store."""

    verdict: Verdict
    event_id: uuid.UUID
    new: NewEvent | None = None


@dataclass(frozen=True)
class Protecting:
    """What a new event is protected with: the service's keys and registry, and the fresh
    data key a consent gets (random bytes, made by the caller: this module stays pure)."""

    protection: DataProtection
    data_key: bytes


def decide_acceptance(
    stored_hash: str | None,
    submitted: PoliceEvent,
    client_name: str,
    now: datetime,
    protecting: Protecting,
    withdrawn: WithdrawnKeys | None = None,
) -> Acceptance:
    """Replay or conflict against ``stored_hash``, or a new event with the rows to store.

    ``submitted`` is what the client sent (its canonical hash decides replay/conflict);
    a withdrawal comes with ``withdrawn``, the case (and referral) it was resolved to.
    """
    body_hash = canonical_hash(submitted)
    if stored_hash is not None:
        return Acceptance(verdict(stored_hash, body_hash), submitted.event_id)
    new = _new_event(submitted, body_hash, client_name, now, protecting, withdrawn)
    return Acceptance(Verdict.NEW, submitted.event_id, new)


def _new_event(
    submitted: PoliceEvent,
    body_hash: str,
    client_name: str,
    now: datetime,
    protecting: Protecting,
    withdrawn: WithdrawnKeys | None,
) -> NewEvent:
    event_id = str(submitted.event_id)
    referral_id = referral_id_of(submitted)
    published = published_event(submitted, protecting, withdrawn)
    record = EventRecord(
        event_id=event_id,
        event_type=submitted.event_type,
        body_sha256=body_hash,
        case_pseudonym=published.case_pseudonym,
        referral_id=str(referral_id) if referral_id else None,
        client_name=client_name,
        received_at=now,
    )
    entry = OutboxEntry(
        event_id=event_id,
        kafka_key=published.kafka_key().decode(),
        payload=published.to_bytes().decode(),
        created_at=now,
    )
    if isinstance(submitted, ConsentGiven):
        data_key = domain_keys.new_data_key(submitted, protecting.protection, protecting.data_key, now)
        return NewEvent(record, entry, data_key=data_key)
    return NewEvent(record, entry, withdrawn_keys=withdrawn)


#: What the consent service publishes on consent.decisions.v2.
PublishedEvent = ConsentGivenV2 | ConsentDeclinedV2 | ConsentWithdrawnV2


def published_event(
    submitted: PoliceEvent, protecting: Protecting, withdrawn: WithdrawnKeys | None = None
) -> PublishedEvent:
    """``submitted`` as it goes on the topic: the case by its pseudonym, a consent's case number
    and contact details sealed under its referral's fresh data key."""
    if isinstance(submitted, (ConsentGiven, ConsentDeclined)):
        # What the router reads of either decision: ids, dates, the charge, the case's pseudonym.
        charge: dict[str, Any] = {
            "event_id": submitted.event_id,
            "occurred_at": submitted.occurred_at,
            "case_pseudonym": protecting.protection.pseudonyms(submitted.case_ref),
            "offence": submitted.offence,
            "charged_on": submitted.charged_on,
            "municipality_code": submitted.municipality_code,
            "recorded_by": submitted.recorded_by,
        }
        if isinstance(submitted, ConsentDeclined):
            return ConsentDeclinedV2(**charge)
        personal = PersonalData(case_ref=submitted.case_ref, person=submitted.person).model_dump_json()
        return ConsentGivenV2(
            **charge,
            preferred_centre=submitted.preferred_centre,
            personal=seal_personal_data(protecting.data_key, referral_id_for(submitted.event_id), personal.encode()),
            consent_text_version=submitted.consent_text_version,
        )
    if withdrawn is None:
        raise ValueError("a withdrawal is published only once resolved to its case (resolve_withdrawal)")
    return ConsentWithdrawnV2(
        event_id=submitted.event_id,
        occurred_at=submitted.occurred_at,
        case_pseudonym=withdrawn.case_pseudonym,
        referral_id=submitted.referral_id,
        reason=submitted.reason,
    )


# ---------------------------------------------------------------------------- checks beyond the schema


def registry_errors(event: ConsentGiven | ConsentDeclined, registry: Registry) -> list[dict[str, str]]:
    """Checks that need the centre registry (which is data, so the schema cannot hold them)."""
    preferred = event.preferred_centre if isinstance(event, ConsentGiven) else None
    if preferred is not None and registry.by_slug(preferred) is None:
        return [error("preferred_centre", "is not one of the centres in the registry", "centre_unknown")]
    return []


@dataclass(frozen=True)
class KnownReferral:
    """What the store knows about a referral_id: the pseudonym of the case it belongs to.

    ``case_pseudonym`` is None once it was erased after ``case_ref_retention_days``.
    """

    case_pseudonym: str | None


def resolve_withdrawal(
    withdrawal: ConsentWithdrawn, known: KnownReferral | None, pseudonyms: CasePseudonyms
) -> tuple[WithdrawnKeys | None, list[dict[str, str]]]:
    """The case (and referral) a withdrawal withdraws, by pseudonym; or errors.

    A withdrawal naming only the case is passed on as it is (the router decides whether it
    matches anything). One naming a referral must name one this service accepted, and if
    it names the case too, the two must agree. Once the referral's case pseudonym was erased
    (retention), the two can no longer be matched: the withdrawal must name the case alone.
    """
    if withdrawal.referral_id is None:
        # The schema requires case_ref or referral_id.
        assert withdrawal.case_ref is not None
        return WithdrawnKeys(pseudonyms(withdrawal.case_ref)), []
    if known is None:
        return None, [error("referral_id", "does not name a consent accepted by this service", "referral_unknown")]
    if known.case_pseudonym is None:
        return None, [
            error(
                "referral_id",
                "is too old to withdraw by referral_id; withdraw by case_ref (without referral_id)",
                "referral_expired",
            )
        ]
    if withdrawal.case_ref is not None and pseudonyms(withdrawal.case_ref) != known.case_pseudonym:
        return None, [error("referral_id", "belongs to another case than case_ref", "referral_case_mismatch")]
    return WithdrawnKeys(known.case_pseudonym, str(withdrawal.referral_id)), []
