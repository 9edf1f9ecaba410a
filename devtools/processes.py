"""What the local servers henvis starts for development (Kafka, Keycloak) share: their state
files, a lock between concurrent starters, detached JVM processes and their end.

Each server keeps ``<name>.pid`` and ``<name>.port`` in its run folder so that later commands,
other shells and parallel test sessions find it; this module reads and writes those files and
owns the process handling, the servers own what is particular to them (commands, readiness).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator, Sequence
from pathlib import Path


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """Serialise concurrent callers (parallel test sessions, two shells) on one file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def read_text(path: Path) -> str | None:
    """File contents stripped, or None when missing (state files are optional)."""
    try:
        return path.read_text(encoding="utf-8").strip()
    except (FileNotFoundError, NotADirectoryError):
        return None


def read_int(path: Path) -> int | None:
    """An integer state file (pid, port); None when missing or garbled."""
    text = read_text(path)
    return int(text) if text and text.isdigit() else None


def write_state(run_dir: Path, name: str, pid: int, port: int) -> None:
    """Record pid and port so later commands (other processes) find the server."""
    (run_dir / f"{name}.pid").write_text(f"{pid}\n")
    (run_dir / f"{name}.port").write_text(f"{port}\n")


def clear_state(run_dir: Path, name: str) -> None:
    """Forget a server that is gone, so its status stops reporting it."""
    for suffix in ("pid", "port"):
        (run_dir / f"{name}.{suffix}").unlink(missing_ok=True)


def find_maven() -> str | None:
    """Path of ``mvn`` (needed once per version, to fetch a server from Maven Central)."""
    return shutil.which("mvn")


def alive(pid: int) -> bool:
    """Whether pid runs; reaps it first if it is our exited child (else it stays a zombie)."""
    with contextlib.suppress(ChildProcessError):
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    stat = read_text(Path(f"/proc/{pid}/stat")) or ""
    if ") Z" not in stat:
        return True
    # A zombie someone else has not reaped yet is gone, unless its other threads are still
    # exiting: a killed JVM's main thread turns zombie first, and the process keeps its
    # sockets (a server's port) until the last thread has exited.
    status = read_text(Path(f"/proc/{pid}/status")) or ""
    threads = next((line.split()[1] for line in status.splitlines() if line.startswith("Threads:")), "1")
    return int(threads) > 1


def command_line(pid: int) -> list[bytes] | None:
    """The arguments pid was started with, None where /proc cannot tell (trust the pid file)."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return None


def terminate(pid: int, timeout: float) -> bool:
    """SIGTERM (a JVM server then shuts down cleanly), SIGKILL if it has not exited by timeout;
    ``timeout`` 0: SIGKILL at once, as a power cut would. Whether the process is gone."""
    steps = ((signal.SIGTERM, timeout), (signal.SIGKILL, 10.0)) if timeout else ((signal.SIGKILL, 10.0),)
    for sig, wait_s in steps:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            if not alive(pid):
                return True
            time.sleep(0.1)
    return False


def spawn_detached(command: Sequence[str], run_dir: Path, log_name: str) -> subprocess.Popen:
    """Run a server in its own session, its output to ``run_dir/log_name``, so it outlives the
    shell or test that started it."""
    with open(run_dir / log_name, "wb") as out:
        return subprocess.Popen(
            list(command),
            cwd=run_dir,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
