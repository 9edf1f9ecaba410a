"""The centre's referrals as FHIR R4 ``Task``s, as pure functions: the outcome state machine ↔
``Task.status``/``Task.businessStatus``, what a case system may change in a Task, and the
search filters.

The state machine stays :mod:`domain`'s: a Task update is read as "record this outcome" and
goes down the same path as the inbox's button (``casework.record_and_count``).  Each referral
state maps to one ``Task.status`` (the BSeR closed-loop lifecycle) and the state itself is the
``businessStatus`` code; several states share a status, so a write names the outcome by its
``businessStatus`` and the status must be the one the table gives it.

The mapping table is in docs/caseworker-guide.md; change both together.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime

import jsonpatch
import jsonpointer

from henvis.deadlines import local_date
from henvis.schemas.events import Outcome
from henvis.services.centre import domain

#: The code system of ``Task.businessStatus``: the referral's state in henvis.
STATE_SYSTEM = "urn:henvis:fhir:referral-state"

#: referral state -> Task.status
TASK_STATUS: dict[str, str] = {
    domain.NEW: "requested",
    Outcome.CONTACT_ATTEMPTED.value: "accepted",
    Outcome.CONTACTED.value: "in-progress",
    Outcome.FIRST_INTERVIEW_HELD.value: "in-progress",
    Outcome.FOLLOW_UP_ACCEPTED.value: "completed",
    Outcome.DECLINED_BY_PERSON.value: "completed",
    Outcome.UNREACHABLE.value: "failed",
    Outcome.RETURNED_WRONG_CENTRE.value: "rejected",
    domain.WITHDRAWN: "cancelled",
}

#: What each state is called in the businessStatus's display (Danish, as the inbox says it).
STATE_DISPLAY: dict[str, str] = {
    domain.NEW: "Ny",
    Outcome.CONTACT_ATTEMPTED.value: "Kontaktforsøg",
    Outcome.CONTACTED.value: "Kontakt opnået",
    Outcome.FIRST_INTERVIEW_HELD.value: "Første samtale holdt",
    Outcome.FOLLOW_UP_ACCEPTED.value: "Opfølgning aftalt",
    Outcome.DECLINED_BY_PERSON.value: "Borgeren takkede nej",
    Outcome.UNREACHABLE.value: "Kunne ikke kontaktes",
    Outcome.RETURNED_WRONG_CENTRE.value: "Returneret: forkert center",
    domain.WITHDRAWN: "Samtykke trukket tilbage",
}

TASK_STATUSES = frozenset(
    [
        "draft",
        "requested",
        "received",
        "accepted",
        "rejected",
        "ready",
        "cancelled",
        "in-progress",
        "on-hold",
        "failed",
        "completed",
        "entered-in-error",
    ]
)

#: The Task elements a case system may change; everything else must come back as it was.
WRITABLE = frozenset({"status", "businessStatus", "lastModified", "meta", "text"})


class BadTaskUpdate(Exception):
    """A Task update henvis cannot apply; ``http_status`` 400/422, ``field`` the FHIR element."""

    def __init__(self, message: str, field: str, http_status: int = 422):
        super().__init__(message)
        self.field = field
        self.http_status = http_status


def business_status(state: str) -> dict:
    """``Task.businessStatus`` of a referral in ``state``."""
    return {"coding": [{"system": STATE_SYSTEM, "code": state, "display": STATE_DISPLAY[state]}]}


def apply_patch(task: dict, operations: object) -> dict:
    """``task`` with a JSON Patch (RFC 6902) applied; :class:`BadTaskUpdate` if it does not apply."""
    if not isinstance(operations, list):
        raise BadTaskUpdate("A JSON Patch is a JSON array of operations.", "body", 400)
    try:
        patched = jsonpatch.JsonPatch(operations).apply(task)
    except (jsonpatch.JsonPatchException, jsonpointer.JsonPointerException, TypeError, KeyError):
        # A fixed sentence: the libraries' own can quote the document they were applied to.
        raise BadTaskUpdate(
            "The JSON Patch does not apply to the Task (a malformed operation, a path that does not exist, "
            "or a failed test).",
            "body",
            422,
        ) from None
    if not isinstance(patched, dict):
        raise BadTaskUpdate("The JSON Patch must leave a Task.", "body", 422)
    return patched


@dataclass(frozen=True)
class Wanted:
    """What a Task update asks: ``outcome`` None when it changes nothing (an idempotent repeat)."""

    outcome: str | None
    occurred_at: datetime | None


def wanted_outcome(current: dict, updated: dict, state: str) -> Wanted:
    """The outcome an updated Task records, checked against the current one.

    ``current``/``updated`` are the Task as henvis serves it and as the case system sends it
    back (both FHIR JSON, the updated one already validated as a Task).  Raises
    :class:`BadTaskUpdate` naming the element that cannot be accepted.
    """
    for key in sorted(set(current) | set(updated)):
        if key not in WRITABLE and current.get(key) != updated.get(key):
            raise BadTaskUpdate(f"Task.{key} cannot be changed; only status and businessStatus can.", f"Task.{key}")
    status = updated.get("status")
    if status not in TASK_STATUSES:
        raise BadTaskUpdate("Task.status is not a FHIR task status.", "Task.status")
    outcome = _business_code(updated)
    if outcome not in TASK_STATUS:
        raise BadTaskUpdate(
            f"Task.businessStatus must be a code of {STATE_SYSTEM}: one of {', '.join(domain.next_outcomes(state))}"
            " may be recorded now.",
            "Task.businessStatus",
        )
    if TASK_STATUS[outcome] != status:
        raise BadTaskUpdate(
            f"Task.status must be '{TASK_STATUS[outcome]}' for businessStatus '{outcome}'.", "Task.status"
        )
    if outcome == state:
        return Wanted(None, None)
    occurred_at = None
    if updated.get("lastModified") != current.get("lastModified") and updated.get("lastModified"):
        occurred_at = _instant(updated["lastModified"], "Task.lastModified")
    return Wanted(outcome, occurred_at)


def _business_code(task: dict) -> str | None:
    codings = (task.get("businessStatus") or {}).get("coding") or []
    codes = [c.get("code") for c in codings if isinstance(c, dict) and c.get("system") == STATE_SYSTEM]
    return codes[0] if len(codes) == 1 else None


def _instant(value: str, field: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise BadTaskUpdate(f"{field} must be a dateTime with a time zone.", field) from None
    if parsed.tzinfo is None:
        raise BadTaskUpdate(f"{field} must be a dateTime with a time zone.", field)
    return parsed


# ---------------------------------------------------------------- search


class BadSearch(Exception):
    """A search parameter henvis does not understand; ``field`` names it."""

    def __init__(self, message: str, field: str):
        super().__init__(message)
        self.field = field


_PREFIXES = ("eq", "ge", "gt", "le", "lt")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


@dataclass(frozen=True)
class DateFilter:
    """``authored-on`` as FHIR writes it: a prefix and a date (Danish calendar day) or an instant."""

    prefix: str
    day: date | None
    instant: datetime | None

    def matches(self, when: datetime) -> bool:
        value: date | datetime
        if self.day is not None:
            value, bound = local_date(when), self.day
            return _compare(self.prefix, value, bound)
        assert self.instant is not None
        return _compare(self.prefix, when, self.instant)


def _compare(prefix: str, value, bound) -> bool:
    return {
        "eq": value == bound,
        "ge": value >= bound,
        "gt": value > bound,
        "le": value <= bound,
        "lt": value < bound,
    }[prefix]


def date_filter(raw: str) -> DateFilter:
    """Parse one ``authored-on`` value (``ge2026-01-01``, ``lt2026-01-02T10:00:00+01:00``)."""
    prefix, value = (raw[:2], raw[2:]) if raw[:2] in _PREFIXES else ("eq", raw)
    refusal = BadSearch(
        "authored-on must be a date (2026-01-31) or a dateTime with a time zone, after eq/ge/gt/le/lt.",
        "authored-on",
    )
    try:
        if _DATE.match(value):
            return DateFilter(prefix, date.fromisoformat(value), None)
        instant = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise refusal from None
    if instant.tzinfo is None:
        raise refusal
    return DateFilter(prefix, None, instant)


def states_with_status(statuses: list[frozenset[str]]) -> frozenset[str] | None:
    """The referral states whose Task status is in every one of ``statuses`` (None: no filter)."""
    if not statuses:
        return None
    return frozenset(state for state, status in TASK_STATUS.items() if all(status in wanted for wanted in statuses))


def status_filter(raw: str) -> frozenset[str]:
    """The Task statuses a ``status`` parameter asks for (comma means or)."""
    wanted = frozenset(part.strip() for part in raw.split(",") if part.strip())
    unknown = sorted(wanted - TASK_STATUSES)
    if unknown or not wanted:
        raise BadSearch("status must be FHIR task statuses separated by commas.", "status")
    return wanted
