"""Every event henvis publishes or consumes (DESIGN §4), and how they travel as bytes.

Each event carries ``event_id`` (UUID, the idempotency key), ``event_type``,
``schema_version`` and a timezone-aware ``occurred_at``.  Unknown fields are rejected.
"""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime
from enum import StrEnum
from functools import lru_cache
from typing import Annotated, Any, ClassVar, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, TypeAdapter, model_validator
from pydantic_core import PydanticCustomError

from henvis.schemas.person import PERSONAL_DATA_FIELDS, MunicipalityCode, Person

#: Namespace of referral ids; fixed forever so a replay derives the same ids.
REFERRAL_NAMESPACE = uuid.UUID("6f1c2d2e-6b0e-5d8e-9a57-2f1d1e4b7c10")

CaseRef = Annotated[
    str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9./-]{0,63}$", description="Police case (journal) number.")
]
CentreSlug = Annotated[str, Field(pattern=r"^[a-z][a-z0-9-]{1,39}$", description="Centre id from the registry.")]
Identifier = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")]
CasePseudonym = Annotated[
    str,
    Field(
        pattern=r"^[0-9a-f]{64}$",
        description="HMAC-SHA256 of case_ref under the consent service's secret: names the case, cannot be reversed.",
    ),
]
SealedPersonalData = Annotated[
    str,
    Field(
        pattern=r"^[A-Za-z0-9+/]+={0,2}$",
        min_length=56,  # a 24-byte nonce and a 16-byte tag, base64: less cannot be a sealed blob
        max_length=8192,
        description=(
            "The case's personal data (PersonalData: case_ref and person) sealed with XChaCha20-Poly1305 under"
            " the referral's data key, bound to the referral id; base64 of nonce and ciphertext. The key is in"
            " the consent service's key store, released only to the referral's centre or the manual-handling"
            " role, and destroyed on withdrawal: from then on no copy anywhere opens."
        ),
    ),
]


def derived_id(namespace: uuid.UUID, *parts: object) -> uuid.UUID:
    """A deterministic id from its parts: a replay or a retry derives the same id, so
    downstream dedupe by id works.  Each service has its own namespace, fixed forever."""
    return uuid.uuid5(namespace, ":".join(str(part) for part in parts))


@lru_cache(maxsize=1024)  # the router asks for the same consent's id several times in a row
def referral_id_for(consent_event_id: uuid.UUID) -> uuid.UUID:
    """The referral id of a consent: deterministic, so a replayed consent gets the same id."""
    return uuid.uuid5(REFERRAL_NAMESPACE, str(consent_event_id))


class Offence(StrEnum):
    DRINK_DRIVING = "drink_driving"
    DRUG_DRIVING = "drug_driving"
    DRINK_AND_DRUG_DRIVING = "drink_and_drug_driving"


class WithdrawalReason(StrEnum):
    """Why consent was withdrawn; a closed set so no free text (and no personal data) travels."""

    PERSON_CHANGED_MIND = "person_changed_mind"
    RECORDED_IN_ERROR = "recorded_in_error"
    OTHER = "other"


class Outcome(StrEnum):
    CONTACT_ATTEMPTED = "contact_attempted"
    CONTACTED = "contacted"
    FIRST_INTERVIEW_HELD = "first_interview_held"
    FOLLOW_UP_ACCEPTED = "follow_up_accepted"
    UNREACHABLE = "unreachable"
    DECLINED_BY_PERSON = "declined_by_person"
    RETURNED_WRONG_CENTRE = "returned_wrong_centre"
    WITHDRAWAL_ACKNOWLEDGED = "withdrawal_acknowledged"


class Decision(StrEnum):
    ACCEPTED = "accepted"
    DECLINED = "declined"
    WITHDRAWN = "withdrawn"


class ManualReason(StrEnum):
    OUTSIDE_DISTRICT = "outside_district"
    NO_MUNICIPALITY = "no_municipality"
    INVALID_EVENT = "invalid_event"
    RETURNED_WRONG_CENTRE = "returned_wrong_centre"
    WITHDRAWAL_UNMATCHED = "withdrawal_unmatched"
    UNDECRYPTABLE = "undecryptable"


class RoutedBy(StrEnum):
    RESIDENCE = "residence"
    PREFERRED_CENTRE = "preferred_centre"


class Event(BaseModel):
    """Fields every event has.  ``schema_version`` is 1, or 2 for the events whose personal
    data travels sealed (a reader rejects any other)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    #: Topic key field of this event (see ``henvis.schemas.topics``).
    key_field: ClassVar[str] = "event_id"

    event_id: uuid.UUID = Field(description="Idempotency key: the same event sent twice has the same id.")
    schema_version: Literal[1, 2] = 1
    occurred_at: AwareDatetime = Field(description="When it happened, with a timezone.")

    def to_bytes(self) -> bytes:
        return self.model_dump_json().encode()

    def kafka_key(self) -> bytes:
        return str(getattr(self, self.key_field)).encode()


def _charged_before_decision(charged_on: date, occurred_at: datetime) -> None:
    if charged_on > occurred_at.date():
        raise PydanticCustomError("charged_after_decision", "charged_on must not be after occurred_at")


class _ChargeFacts(Event):
    """What a consent decision says about the charge (shared by given and declined)."""

    key_field: ClassVar[str] = "case_ref"

    schema_version: Literal[1] = 1
    case_ref: CaseRef
    offence: Offence
    charged_on: date
    municipality_code: MunicipalityCode | None = Field(
        default=None, description="Residence kommunekode; absent for a person with no Danish address."
    )

    @model_validator(mode="after")
    def _charge_before_decision(self):
        _charged_before_decision(self.charged_on, self.occurred_at)
        return self


class PersonalData(BaseModel):
    """What a ``personal`` blob holds once opened with its referral's data key."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    case_ref: CaseRef
    person: Person


# ---------------------------------------------------------------- police -> consent service


class ConsentGiven(_ChargeFacts):
    """The person said yes to being contacted by a rusmiddelcenter."""

    event_type: Literal["consent.given"] = "consent.given"
    preferred_centre: CentreSlug | None = Field(
        default=None, description="The citizen's free choice among the eleven centres; overrides residence."
    )
    person: Person
    consent_text_version: Identifier = Field(description="Version of the consent wording read to the person.")
    recorded_by: Identifier = Field(description="Officer or system that recorded the decision.")


class ConsentDeclined(_ChargeFacts):
    """The person said no. Carries no personal data, and is rejected if it does."""

    event_type: Literal["consent.declined"] = "consent.declined"
    recorded_by: Identifier | None = None

    @model_validator(mode="before")
    @classmethod
    def _no_personal_data(cls, data: Any) -> Any:
        if isinstance(data, dict):
            found = sorted(PERSONAL_DATA_FIELDS.intersection(data))
            if found:
                raise PydanticCustomError(
                    "declined_with_personal_data",
                    "a declined decision must not carry personal data (remove: {fields})",
                    {"fields": ", ".join(found)},
                )
        return data


class ConsentWithdrawn(Event):
    """The person changed their mind. Names the case, or the referral the centre got."""

    key_field: ClassVar[str] = "case_ref"

    schema_version: Literal[1] = 1
    event_type: Literal["consent.withdrawn"] = "consent.withdrawn"
    case_ref: CaseRef | None = None
    referral_id: uuid.UUID | None = None
    reason: WithdrawalReason | None = None

    @model_validator(mode="after")
    def _names_what_is_withdrawn(self):
        if self.case_ref is None and self.referral_id is None:
            raise PydanticCustomError("withdrawal_target", "case_ref or referral_id is required")
        return self


# ---------------------------------------------------------------- consent service -> router
# What the consent service publishes for each police event: the case named by its pseudonym,
# the personal data sealed under the referral's data key, everything the router needs readable.


class _SealedChargeFacts(Event):
    """The charge as the router sees it: case pseudonym, offence, dates, municipality."""

    key_field: ClassVar[str] = "case_pseudonym"

    schema_version: Literal[2] = 2
    case_pseudonym: CasePseudonym
    offence: Offence
    charged_on: date
    municipality_code: MunicipalityCode | None = Field(
        default=None, description="Residence kommunekode; absent for a person with no Danish address."
    )

    @model_validator(mode="after")
    def _charge_before_decision(self):
        _charged_before_decision(self.charged_on, self.occurred_at)
        return self


class ConsentGivenV2(_SealedChargeFacts):
    """A consent as published on the topic: its personal data sealed under its referral's data key."""

    event_type: Literal["consent.given"] = "consent.given"
    preferred_centre: CentreSlug | None = None
    personal: SealedPersonalData
    consent_text_version: Identifier
    recorded_by: Identifier


class ConsentDeclinedV2(_SealedChargeFacts):
    """A decline as published on the topic: the case by its pseudonym, no personal data."""

    event_type: Literal["consent.declined"] = "consent.declined"
    recorded_by: Identifier | None = None


class ConsentWithdrawnV2(Event):
    """A withdrawal as published on the topic: the case by its pseudonym (its data keys are
    destroyed already when this is published), and the referral when the police named one."""

    key_field: ClassVar[str] = "case_pseudonym"

    schema_version: Literal[2] = 2
    event_type: Literal["consent.withdrawn"] = "consent.withdrawn"
    case_pseudonym: CasePseudonym
    referral_id: uuid.UUID | None = None
    reason: WithdrawalReason | None = None


# ---------------------------------------------------------------- router -> centre


class ReferralIssued(Event):
    """A referral to one centre: the only event that carries contact details to a centre, sealed."""

    key_field: ClassVar[str] = "referral_id"

    schema_version: Literal[2] = 2
    event_type: Literal["referral.issued"] = "referral.issued"
    referral_id: uuid.UUID = Field(description="uuid5 of the consent event_id: stable across replays.")
    consent_event_id: uuid.UUID
    centre: CentreSlug
    routed_by: RoutedBy
    offence: Offence
    charged_on: date
    municipality_code: MunicipalityCode | None = None
    personal: SealedPersonalData
    contact_due_by: date = Field(description="First contact attempt due by (working days from the registry).")
    treatment_due_by: date = Field(description="Treatment start due by (sundhedsloven §141 / serviceloven §101).")
    issued_at: AwareDatetime


class ReferralWithdrawn(Event):
    """The person withdrew consent: the centre must erase the contact details."""

    key_field: ClassVar[str] = "referral_id"

    schema_version: Literal[1] = 1
    event_type: Literal["referral.withdrawn"] = "referral.withdrawn"
    referral_id: uuid.UUID
    centre: CentreSlug
    reason: WithdrawalReason | None = None


# ---------------------------------------------------------------- centre -> stats


class ReferralOutcome(Event):
    """Something a caseworker recorded about a referral."""

    key_field: ClassVar[str] = "referral_id"

    schema_version: Literal[1] = 1
    event_type: Literal["referral.outcome"] = "referral.outcome"
    referral_id: uuid.UUID
    centre: CentreSlug
    outcome: Outcome


# ---------------------------------------------------------------- router -> stats


class ReferralFact(Event):
    """A pseudonymous fact for the statistics: never a name, phone, e-mail, address, CPR or case_ref."""

    key_field: ClassVar[str] = "referral_id"

    schema_version: Literal[1] = 1
    event_type: Literal["referral.fact"] = "referral.fact"
    referral_id: uuid.UUID = Field(description="For a decline: the id the referral would have had.")
    decision: Decision
    offence: Offence | None = None
    municipality_code: MunicipalityCode | None = None
    centre: CentreSlug | None = Field(default=None, description="Absent when the case went to manual handling.")
    decided_on: date
    contact_due_by: date | None = None
    treatment_due_by: date | None = None


# ---------------------------------------------------------------- manual handling


class ManualHandling(Event):
    """Something a person must look at. Personal data travels only sealed under the referral's data key."""

    key_field: ClassVar[str] = "event_id"

    schema_version: Literal[2] = 2
    event_type: Literal["manual.handling"] = "manual.handling"
    reason: ManualReason
    source_event_id: uuid.UUID | None = None
    source_event_type: str | None = Field(default=None, max_length=64)
    referral_id: uuid.UUID | None = None
    municipality_code: str | None = Field(default=None, pattern=r"^\d{3}$")
    offence: Offence | None = None
    detail: str | None = Field(default=None, max_length=500, description="Fixed explanation; never personal data.")
    personal: SealedPersonalData | None = Field(
        default=None,
        description=(
            "The case's personal data sealed under the referral's data key; the manual-handling role gets the"
            " key from the key store by referral_id while the case is in manual handling."
        ),
    )


ParsedEvent = (
    ConsentGivenV2
    | ConsentDeclinedV2
    | ConsentWithdrawnV2
    | ReferralIssued
    | ReferralWithdrawn
    | ReferralOutcome
    | ReferralFact
    | ManualHandling
)
AnyEvent = Annotated[ParsedEvent, Field(discriminator="event_type")]
ConsentDecision = Annotated[ConsentGiven | ConsentDeclined, Field(discriminator="event_type")]

#: Every event on a topic, by type: what :func:`parse_event` reads.
EVENT_TYPES: dict[str, type[Event]] = {
    model.model_fields["event_type"].default: model
    for model in (
        ConsentGivenV2,
        ConsentDeclinedV2,
        ConsentWithdrawnV2,
        ReferralIssued,
        ReferralWithdrawn,
        ReferralOutcome,
        ReferralFact,
        ManualHandling,
    )
}
#: What police case systems send the consent API (it publishes them as the ``...V2`` events).
POLICE_EVENTS: tuple[type[Event], ...] = (ConsentGiven, ConsentDeclined, ConsentWithdrawn)

_ANY_EVENT = TypeAdapter(AnyEvent)
_DECISION = TypeAdapter(ConsentDecision)
_POLICE_EVENT = TypeAdapter(
    Annotated[ConsentGiven | ConsentDeclined | ConsentWithdrawn, Field(discriminator="event_type")]
)


def parse_event(data: bytes | str | dict) -> ParsedEvent:
    """Parse any event found on a henvis topic from JSON bytes/str or a dict; raises ``ValidationError``."""
    if isinstance(data, dict):
        return _ANY_EVENT.validate_python(data)
    return _ANY_EVENT.validate_json(data)


def parse_decision(data: bytes | str | dict) -> ConsentGiven | ConsentDeclined:
    """Parse a consent decision (given or declined) as the consent API receives it."""
    if isinstance(data, dict):
        return _DECISION.validate_python(data)
    return _DECISION.validate_json(data)


def parse_police_event(data: bytes | str | dict) -> ConsentGiven | ConsentDeclined | ConsentWithdrawn:
    """Parse what a police case system sends the consent API (a decision or a withdrawal)."""
    if isinstance(data, dict):
        return _POLICE_EVENT.validate_python(data)
    return _POLICE_EVENT.validate_json(data)


def utcnow() -> datetime:
    return datetime.now(UTC)
