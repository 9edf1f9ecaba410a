"""``henvis consent submit FILE.jsonl``: deliver a batch of events from a police system.

Every line is validated before anything is sent (``batch.check_lines``). Then the events are
posted one by one, in file order (a withdrawal after its consent), with a progress display.
Rerunning the same file is safe: events are idempotent by event_id, and an event the service
already has (200) counts as done.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

import httpx

from henvis.client_credentials import TokenUnavailable
from henvis.registry import Registry
from henvis.services.consent.batch import Checked, Item, check_lines
from henvis.services.consent.delivery import backoff_seconds

_RETRYABLE_STATUS = {429, 500, 502, 503, 504}


class Progress:
    """One self-overwriting line on a terminal; a line per 10 % otherwise (CI logs)."""

    def __init__(self, total: int, stream: TextIO):
        self.total, self.stream = total, stream
        self.tty = stream.isatty()
        self.started = time.monotonic()
        self._last_decile = -1

    def update(self, done: int, failed: int) -> None:
        """Show that ``done`` of the events were handled, ``failed`` of them without success."""
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
    """How a run went: events accepted now, accepted before, failed, and why it stopped early."""

    accepted: int = 0
    already_there: int = 0
    failed: list[str] = field(default_factory=list)
    aborted: str | None = None


@dataclass(frozen=True)
class _Posted:
    """The final answer to one event: its 2xx status, or why it was not delivered."""

    status: int | None = None
    problem: str = ""
    abort: bool = False  # the credential was refused: sending more is pointless


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
        posted = _post_with_retries(item, client, attempts, sleep)
        if posted.status == 202:
            report.accepted += 1
        elif posted.status == 200:
            report.already_there += 1
        elif posted.abort:
            report.aborted = posted.problem
            break
        else:
            report.failed.append(f"line {item.line}: {posted.problem}")
        if progress:
            progress.update(index, len(report.failed))
    return report


def _post_with_retries(item: Item, client: httpx.Client, attempts: int, sleep: Callable[[float], None]) -> _Posted:
    last = ""
    for attempt in range(1, attempts + 1):
        try:
            response = client.post(item.path, content=item.body, headers={"Content-Type": "application/json"})
        except TokenUnavailable:
            return _Posted(problem="the identity provider gave no access token; nothing more was sent", abort=True)
        except httpx.TransportError as exc:
            last = f"could not reach the service ({type(exc).__name__})"
        else:
            if response.status_code not in _RETRYABLE_STATUS:
                return _final(response)
            last = f"the service is unavailable ({response.status_code})"
        if attempt < attempts:
            sleep(backoff_seconds(attempt, cap=10.0))
    return _Posted(problem=f"{last}; gave up after {attempts} attempts (rerun the file later: it is safe)")


def _final(response: httpx.Response) -> _Posted:
    """An answer that retrying would not change."""
    if response.status_code in (200, 202):
        return _Posted(status=response.status_code)
    if response.status_code in (401, 403):
        return _Posted(
            problem=f"the service refused the credential ({response.status_code}); nothing more was sent", abort=True
        )
    return _Posted(problem=_describe_rejection(response))


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
    token: str | httpx.Auth,
    registry: Registry,
    *,
    check_only: bool = False,
    out: TextIO = sys.stdout,
    err: TextIO = sys.stderr,
    transport: httpx.BaseTransport | None = None,
) -> int:
    """The whole command; returns the exit code (0 ok, 1 invalid file, 3 not all delivered).

    ``token``: a static bearer token, or an :class:`httpx.Auth` that gets access tokens
    (:class:`henvis.client_credentials.ProviderAuth`).
    """
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        print(f"cannot read {path}: {type(exc).__name__}", file=err)
        return 1
    checked = check_lines(lines, registry)
    if not _report_checked(path, checked, out, err):
        return 1
    if check_only or not checked.items:
        return 0
    headers = {"Authorization": f"Bearer {token}"} if isinstance(token, str) else {}
    auth = None if isinstance(token, str) else token
    with httpx.Client(base_url=url, headers=headers, auth=auth, timeout=30.0, transport=transport) as client:
        report = send_items(checked.items, client, Progress(len(checked.items), err))
    _report_sent(report, out, err)
    return 0 if not report.failed and not report.aborted else 3


def _report_checked(path: Path, checked: Checked, out: TextIO, err: TextIO) -> bool:
    """Print the file's problems, or how many events it holds; True when it is valid."""
    if checked.errors:
        for message in checked.errors:
            print(message, file=err)
        print(f"{path}: {len(checked.errors)} problem(s); nothing was sent.", file=err)
        return False
    print(
        f"{path}: {len(checked.items)} event(s) valid"
        + (f", {checked.duplicates} repeated line(s) skipped" if checked.duplicates else ""),
        file=out,
    )
    return True


def _report_sent(report: SendReport, out: TextIO, err: TextIO) -> None:
    for message in report.failed:
        print(message, file=err)
    if report.aborted:
        print(report.aborted, file=err)
    print(
        f"accepted {report.accepted}, already accepted before {report.already_there}, failed {len(report.failed)}"
        + (" (aborted)" if report.aborted else ""),
        file=out,
    )
