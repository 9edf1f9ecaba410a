"""What a centre sees of its referrals, as pure functions: the inbox list, one referral, the counts.

The store loads :class:`Referral` snapshots (contact details only where they are shown) and
these functions decide status, order and shape; the JSON API and the web page show the same.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import date, datetime

from pydantic import ValidationError

from henvis.schemas.events import PersonalData
from henvis.services.centre import domain
from henvis.shredding import Undecryptable, open_personal_data


@dataclass(frozen=True)
class Contact:
    """How to reach the referred person; the inbox keeps it until it is erased."""

    case_ref: str | None
    full_name: str | None
    phone: str | None
    email: str | None
    street: str | None
    postcode: str | None
    city: str | None
    cpr: str | None

    def postal_address(self) -> dict | None:
        """The address as the API shows it; None for a person without a street address."""
        if not self.street:
            return None
        return {"street": self.street, "postcode": self.postcode, "city": self.city}

    @classmethod
    def of(cls, personal: PersonalData) -> Contact:
        person, address = personal.person, personal.person.postal_address
        return cls(
            case_ref=personal.case_ref,
            full_name=person.full_name,
            phone=person.phone,
            email=person.email,
            street=address.street if address else None,
            postcode=address.postcode if address else None,
            city=address.city if address else None,
            cpr=person.cpr,
        )


@dataclass(frozen=True)
class Referral:
    """One referral in a centre's inbox, as the rules need it (times are UTC-aware)."""

    referral_id: str
    centre: str
    state: str
    offence: str
    charged_on: date
    municipality_code: str | None
    contact_due_by: date
    treatment_due_by: date
    issued_at: datetime
    last_outcome: str | None
    contact_erased_at: datetime | None
    #: shown to a caseworker: None until opened (:func:`opened`), once erased, and in lists
    contact: Contact | None = None
    #: the contact details as they arrived, sealed under the referral's data key; None once erased
    sealed: str | None = None

    def status(self, today: date) -> domain.Status:
        """Open, overdue, closed or withdrawn on ``today`` (Danish date)."""
        return domain.status_of(self.state, self.contact_due_by, self.treatment_due_by, today)


def open_personal(referral_id: str, sealed: str, data_key: bytes) -> PersonalData:
    """The personal data a sealed blob holds; :class:`Undecryptable` if it does not open to them."""
    plaintext = open_personal_data(data_key, uuid.UUID(referral_id), sealed)
    try:
        return PersonalData.model_validate_json(plaintext)
    except ValidationError:
        raise Undecryptable("opens, but does not hold a case's personal data") from None


def opened(referral: Referral, data_key: bytes) -> Referral:
    """``referral`` with its contact details opened with ``data_key`` (raises :class:`Undecryptable`)."""
    if referral.sealed is None:
        return referral
    return replace(referral, contact=Contact.of(open_personal(referral.referral_id, referral.sealed, data_key)))


@dataclass(frozen=True)
class HistoryEntry:
    """One recorded outcome of a referral."""

    event_id: str
    outcome: str
    occurred_at: datetime
    recorded_by: str


def summary(referral: Referral, today: date) -> dict:
    """A referral as the inbox lists it: no contact details."""
    return {
        "referral_id": referral.referral_id,
        "centre": referral.centre,
        "status": referral.status(today).value,
        "offence": referral.offence,
        "contact_due_by": referral.contact_due_by.isoformat(),
        "treatment_due_by": referral.treatment_due_by.isoformat(),
        "issued_at": referral.issued_at.isoformat(),
        "last_outcome": referral.last_outcome,
        "next_outcomes": domain.next_outcomes(referral.state),
    }


def detail(referral: Referral, history: Sequence[HistoryEntry], today: date) -> dict:
    """One referral with its contact details (None once erased) and its outcomes, oldest first."""
    shown = summary(referral, today)
    shown["person"] = _person(referral.contact)
    shown["charged_on"] = referral.charged_on.isoformat()
    shown["contact_erased_at"] = referral.contact_erased_at.isoformat() if referral.contact_erased_at else None
    shown["outcomes"] = [
        {
            "event_id": entry.event_id,
            "outcome": entry.outcome,
            "occurred_at": entry.occurred_at.isoformat(),
            "recorded_by": entry.recorded_by,
        }
        for entry in history
    ]
    return shown


def _person(contact: Contact | None) -> dict | None:
    if contact is None:
        return None
    return {
        "full_name": contact.full_name,
        "phone": contact.phone,
        "email": contact.email,
        "postal_address": contact.postal_address(),
        "cpr": contact.cpr,
        "case_ref": contact.case_ref,
    }


def access_action(shown: dict) -> str:
    """How the access log names a look at ``shown`` (a :func:`detail`): with or without contact details."""
    return "view_contact_details" if shown["person"] else "view_referral"


def inbox(referrals: Iterable[Referral], wanted: str, today: date) -> list[dict]:
    """The referrals matching the ``wanted`` filter, most urgent deadline first, as summaries."""
    chosen = [referral for referral in referrals if domain.matches_filter(referral.status(today), wanted)]
    chosen.sort(key=_urgency)
    return [summary(referral, today) for referral in chosen]


def _urgency(referral: Referral) -> tuple[date, datetime]:
    deadline = domain.current_deadline(referral.state, referral.contact_due_by, referral.treatment_due_by)
    return deadline, referral.issued_at


def open_and_overdue(referrals: Iterable[Referral], today: date) -> dict[str, tuple[int, int]]:
    """centre -> (open, overdue) referrals; overdue ones count as open too."""
    counts: dict[str, tuple[int, int]] = {}
    for referral in referrals:
        status = referral.status(today)
        if not domain.matches_filter(status, "open"):
            continue
        open_count, overdue = counts.get(referral.centre, (0, 0))
        counts[referral.centre] = (open_count + 1, overdue + (status is domain.Status.OVERDUE))
    return counts
