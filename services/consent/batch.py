"""Pure checks of a batch file for ``henvis consent submit``, before anything is sent.

Every line is validated and every problem reported with its line number (field names and
rules, never the values). A line repeating an earlier event is sent once; a different event
under an event_id already used in the file is an error.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from pydantic import TypeAdapter, ValidationError

from henvis.registry import Registry
from henvis.schemas.errors import safe_errors
from henvis.schemas.events import ConsentDecision, ConsentWithdrawn, Event
from henvis.services.consent import domain
from henvis.services.consent.refusals import name_discriminator

DECISIONS_PATH = "/v1/decisions"
WITHDRAWALS_PATH = "/v1/withdrawals"
_ADAPTERS: dict[str, tuple[str, TypeAdapter]] = {
    "consent.given": (DECISIONS_PATH, TypeAdapter(ConsentDecision)),
    "consent.declined": (DECISIONS_PATH, TypeAdapter(ConsentDecision)),
    "consent.withdrawn": (WITHDRAWALS_PATH, TypeAdapter(ConsentWithdrawn)),
}


@dataclass(frozen=True)
class Item:
    """One event to send: its line, the endpoint path and the line's bytes as written."""

    line: int
    path: str
    event_id: str
    body: bytes


@dataclass
class Checked:
    """The events to send, in file order, and every problem found."""

    items: list[Item] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    duplicates: int = 0


class _InvalidLine(Exception):
    def __init__(self, problems: list[str]):
        super().__init__(problems)
        self.problems = problems


def check_lines(lines: list[str], registry: Registry) -> Checked:
    """Validate every line; collect every error as ``line N: field: message``."""
    checked = Checked()
    first_seen: dict[str, tuple[int, str]] = {}
    for number, text in enumerate(lines, start=1):
        if not text.strip():
            continue
        try:
            path, event = _validated(text, registry)
        except _InvalidLine as invalid:
            checked.errors += [f"line {number}: {problem}" for problem in invalid.problems]
            continue
        event_id, digest = str(event.event_id), domain.canonical_hash(event)
        first_line, first_digest = first_seen.setdefault(event_id, (number, digest))
        if first_line == number:
            checked.items.append(Item(number, path, event_id, text.strip().encode()))
        elif first_digest == digest:
            checked.duplicates += 1  # the same event twice: send it once
        else:
            checked.errors.append(f"line {number}: event_id: already used on line {first_line} for a different event")
    return checked


def _validated(text: str, registry: Registry) -> tuple[str, Event]:
    """The endpoint path and the event of one line; raises ``_InvalidLine`` with its problems."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        raise _InvalidLine(["not valid JSON"]) from None
    if not isinstance(data, dict):
        raise _InvalidLine(["must be a JSON object (one event per line)"])
    event_type = data.get("event_type")
    target = _ADAPTERS.get(event_type) if isinstance(event_type, str) else None
    if target is None:
        raise _InvalidLine(["event_type: must be consent.given, consent.declined or consent.withdrawn"])
    path, adapter = target
    try:
        event = adapter.validate_python(data)
    except ValidationError as exc:
        raise _InvalidLine(_described(name_discriminator(safe_errors(exc)))) from None
    problems = domain.registry_errors(event, registry) if path == DECISIONS_PATH else []
    if problems:
        raise _InvalidLine(_described(problems))
    return path, event


def _described(errors: list[dict[str, str]]) -> list[str]:
    return [f"{error['field']}: {error['message']} ({error['type']})" for error in errors]
