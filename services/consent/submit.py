"""``henvis consent submit FILE.jsonl``: deliver a batch of events from a police system.

Every line is validated before anything is sent, and all problems are reported with their
line numbers (field names and rules, never the values). Then the events are posted one by
one, in file order (a withdrawal after its consent), with a progress display. Rerunning
the same file is safe: events are idempotent by event_id, and an event the service already
has (200) counts as done.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

import httpx
from pydantic import TypeAdapter, ValidationError

from henvis.registry import Registry
from henvis.schemas.errors import safe_errors
from henvis.schemas.events import ConsentDecision, ConsentWithdrawn
from henvis.services.consent import domain

DECISIONS_PATH = "/v1/decisions"
WITHDRAWALS_PATH = "/v1/withdrawals"
_ADAPTERS: dict[str, tuple[str, TypeAdapter]] = {
    "consent.given": (DECISIONS_PATH, TypeAdapter(ConsentDecision)),
    "consent.declined": (DECISIONS_PATH, TypeAdapter(ConsentDecision)),
    "consent.withdrawn": (WITHDRAWALS_PATH, TypeAdapter(ConsentWithdrawn)),
}
_RETRYABLE_STATUS = {429, 500, 502, 503, 504}


@dataclass(frozen=True)
class Item:
    line: int
    path: str
    event_id: str
    body: bytes


@dataclass
class Checked:
    items: list[Item] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    duplicates: int = 0


def check_lines(lines: list[str], registry: Registry) -> Checked:
    """Validate every line; collect every error as ``line N: field: message``."""
    checked = Checked()
    seen: dict[str, tuple[int, str]] = {}
    for number, text in enumerate(lines, start=1):
        if not text.strip():
            continue
        try:
            data = json.loads(text)
        except json.JSONDecodeError:
            checked.errors.append(f"line {number}: not valid JSON")
            continue
        if not isinstance(data, dict):
            checked.errors.append(f"line {number}: must be a JSON object (one event per line)")
            continue
        target = _ADAPTERS.get(data.get("event_type")) if isinstance(data.get("event_type"), str) else None
        if target is None:
            checked.errors.append(
                f"line {number}: event_type: must be consent.given, consent.declined or consent.withdrawn"
            )
            continue
        path, adapter = target
        try:
            event = adapter.validate_python(data)
        except ValidationError as exc:
            checked.errors += [f"line {number}: {e['field']}: {e['message']} ({e['type']})" for e in domain.name_discriminator(safe_errors(exc))]
            continue
        problems = domain.registry_errors(event, registry) if path == DECISIONS_PATH else []
        if problems:
            checked.errors += [f"line {number}: {e['field']}: {e['message']} ({e['type']})" for e in problems]
            continue
        event_id, digest = str(event.event_id), domain.canonical_hash(event)
        if event_id in seen:
            first_line, first_digest = seen[event_id]
            if first_digest != digest:
                checked.errors.append(
                    f"line {number}: event_id: already used on line {first_line} for a different event"
                )
            else:
                checked.duplicates += 1  # the same event twice: send it once
            continue
        seen[event_id] = (number, digest)
        checked.items.append(Item(number, path, event_id, text.strip().encode()))
    return checked


class Progress:
    """One self-overwriting line on a terminal; a line per 10 % otherwise (CI logs)."""

    def __init__(self, total: int, stream: TextIO):
        self.total, self.stream = total, stream
        self.tty = stream.isatty()
        self.started = time.monotonic()
        self._last_decile = -1

    def update(self, done: int, failed: int) -> None:
        rate = done / max(time.monotonic() - self.started, 1e-6)
        text = f"sent {done}/{self.total} ({failed} failed, {rate:.0f}/s)"
        if self.tty:
            self.stream.write("\r" + text)
            if done == self.total:
                self.stream.write("\n")
        else:
            decile = done * 10 // max(self.total, 1)
            if decile != self._last_decile or done == self.total:
                self._last_decile = decile
                self.stream.write(text + "\n")
        self.stream.flush()


@dataclass
class SendReport:
    accepted: int = 0
    already_there: int = 0
    failed: list[str] = field(default_factory=list)
    aborted: str | None = None


def send_items(
    items: list[Item],
    client: httpx.Client,
    progress: Progress | None = None,
    attempts: int = 8,
    sleep: Callable[[float], None] = time.sleep,
) -> SendReport:
    """Post every item in order; 202 and 200 are done, temporary failures are retried."""
    report = SendReport()
    for index, item in enumerate(items, start=1):
        outcome = _post_with_retries(item, client, attempts, sleep)
        if outcome == 202:
            report.accepted += 1
        elif outcome == 200:
            report.already_there += 1
        elif isinstance(outcome, str) and outcome.startswith("abort:"):
            report.aborted = outcome.removeprefix("abort:")
            break
        else:
            report.failed.append(f"line {item.line}: {outcome}")
        if progress:
            progress.update(index, len(report.failed))
    return report


def _post_with_retries(item: Item, client: httpx.Client, attempts: int, sleep) -> int | str:
    last = ""
    for attempt in range(1, attempts + 1):
        try:
            response = client.post(item.path, content=item.body, headers={"Content-Type": "application/json"})
        except httpx.TransportError as exc:
            last = f"could not reach the service ({type(exc).__name__})"
        else:
            if response.status_code in (200, 202):
                return response.status_code
            if response.status_code in (401, 403):
                return f"abort:the service refused the credential ({response.status_code}); nothing more was sent"
            if response.status_code not in _RETRYABLE_STATUS:
                return _describe_rejection(response)
            last = f"the service is unavailable ({response.status_code})"
        if attempt < attempts:
            sleep(domain.backoff_seconds(attempt, cap=10.0))
    return f"{last}; gave up after {attempts} attempts (rerun the file later: it is safe)"


def _describe_rejection(response: httpx.Response) -> str:
    try:
        errors = response.json().get("errors") or []
        fields = "; ".join(f"{e['field']}: {e['message']}" for e in errors)
    except (ValueError, AttributeError, KeyError, TypeError):
        fields = ""
    return f"rejected with {response.status_code}" + (f" ({fields})" if fields else "")


def submit_file(
    path: Path,
    url: str,
    token: str,
    registry: Registry,
    *,
    check_only: bool = False,
    out: TextIO = sys.stdout,
    err: TextIO = sys.stderr,
    transport: httpx.BaseTransport | None = None,
) -> int:
    """The whole command; returns the exit code (0 ok, 1 invalid file, 3 not all delivered)."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        print(f"cannot read {path}: {type(exc).__name__}", file=err)
        return 1
    checked = check_lines(lines, registry)
    if checked.errors:
        for message in checked.errors:
            print(message, file=err)
        print(f"{path}: {len(checked.errors)} problem(s); nothing was sent.", file=err)
        return 1
    print(
        f"{path}: {len(checked.items)} event(s) valid"
        + (f", {checked.duplicates} repeated line(s) skipped" if checked.duplicates else ""),
        file=out,
    )
    if check_only or not checked.items:
        return 0
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=url, headers=headers, timeout=30.0, transport=transport) as client:
        report = send_items(checked.items, client, Progress(len(checked.items), err))
    for message in report.failed:
        print(message, file=err)
    if report.aborted:
        print(report.aborted, file=err)
    print(
        f"accepted {report.accepted}, already accepted before {report.already_there}, failed {len(report.failed)}"
        + (" (aborted)" if report.aborted else ""),
        file=out,
    )
    return 0 if not report.failed and not report.aborted else 3
