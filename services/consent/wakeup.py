"""Waking the outbox relay when an event is committed, instead of letting it wait for its poll.

The API's accept transaction announces each new outbox row (``store.accept``): on PostgreSQL
with ``pg_notify``, which the server delivers only when, and only if, that transaction
commits. A relay replica listens here, on a thread of its own:

* PostgreSQL: ``LISTEN`` on a dedicated autocommit connection;
* SQLite: a Linux inotify watch on the database's folder, woken when the database file or its
  write-ahead log is written, which every commit of another process does.

A wake-up only starts the relay's next round earlier. What a round leases, in what order and
for whom stays with ``outbox_store.lease``, so replicas woken together still take turns on the
lease lock, and every promise of the outbox holds as before. A wake-up that never comes (a
lost listener connection, an in-memory database, no inotify) costs at most one poll interval:
the relay's poll stays as the safety net. Nothing here reads a row or logs anything but the
kind of error.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import psycopg
import structlog
from inotify_simple import INotify, flags
from sqlalchemy import URL

from henvis.services.consent.delivery import backoff_seconds
from henvis.services.consent.models import OUTBOX_CHANNEL

log = structlog.get_logger("henvis.consent.relay")

#: How often a waiting relay looks at its stop flag, and a listener at its close flag.
_CHECK_EVERY_S = 0.25


class Wakeup:
    """A flag the relay clears before each round and waits on after an empty one."""

    def __init__(self) -> None:
        self._woken = threading.Event()
        self._closing = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start listening, on a daemon thread (the base class never wakes: polling only)."""
        self._thread = threading.Thread(target=self._listen, name=f"outbox-{type(self).__name__}", daemon=True)
        self._thread.start()

    def arm(self) -> None:
        """Forget earlier wake-ups: the round about to start sees everything committed so far."""
        self._woken.clear()

    def wait(self, timeout: float, stop: threading.Event) -> bool:
        """Wait up to ``timeout`` seconds for a commit, or until ``stop`` is set; True if woken."""
        deadline = time.monotonic() + timeout
        while not stop.is_set():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            if self._woken.wait(min(remaining, _CHECK_EVERY_S)):
                return True
        return False

    def close(self) -> None:
        """Stop listening; returns within about a quarter of a second."""
        self._closing.set()
        if self._thread is not None:
            self._thread.join(timeout=2 * _CHECK_EVERY_S + 1)

    def _listen(self) -> None:
        """Set ``_woken`` whenever a commit may have added outbox rows, until closed."""

    def _listen_with_retries(self, listen_once) -> None:
        """Run ``listen_once`` again after each failure, with the relay's backoff."""
        failures = 0
        while not self._closing.is_set():
            try:
                listen_once()
                return
            except Exception as exc:  # noqa: BLE001 - a broken listener degrades to polling, never stops the relay
                failures += 1
                self._woken.set()  # what was committed meanwhile is found by the next round
                log.warning("relay_wakeup_lost", error_type=type(exc).__name__, consecutive_failures=failures)
                self._closing.wait(backoff_seconds(failures, cap=10.0))


class PostgresWakeup(Wakeup):
    """LISTEN for the accept transactions' notifications on a connection of its own."""

    def __init__(self, url: URL) -> None:
        super().__init__()
        self._conninfo = url.set(drivername="postgresql").render_as_string(hide_password=False)

    def _listen(self) -> None:
        self._listen_with_retries(self._listen_once)

    def _listen_once(self) -> None:
        with psycopg.connect(self._conninfo, autocommit=True, connect_timeout=10) as conn:
            conn.execute(f"LISTEN {OUTBOX_CHANNEL}")
            self._woken.set()  # rows committed before LISTEN took effect: one round finds them
            while not self._closing.is_set():
                for _ in conn.notifies(timeout=_CHECK_EVERY_S):
                    self._woken.set()


class SqliteWakeup(Wakeup):
    """Watch the database file and its write-ahead log for writes by another process."""

    def __init__(self, database: Path) -> None:
        super().__init__()
        self._folder = database.parent
        self._names = {database.name, f"{database.name}-wal"}

    def _listen(self) -> None:
        self._listen_with_retries(self._listen_once)

    def _listen_once(self) -> None:
        with INotify() as inotify:
            inotify.add_watch(self._folder, flags.MODIFY)
            while not self._closing.is_set():
                events = inotify.read(timeout=int(_CHECK_EVERY_S * 1000))
                if any(event.name in self._names for event in events):
                    self._woken.set()


def wakeup_for(url: URL) -> Wakeup:
    """The listener that suits the relay's database; a never-waking one where none does."""
    if url.get_backend_name() == "postgresql":
        return PostgresWakeup(url)
    if url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:":
        return SqliteWakeup(Path(url.database).resolve())
    return Wakeup()
