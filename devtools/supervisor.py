"""Start, watch and stop henvis parts as child processes.

Used by ``henvis demo``, the end-to-end tests and the fault suite, so the pipeline they
drive is the real one: every part is its own ``henvis <service> <command>`` process with
its own JSON log file, started, waited for (on a real readiness signal, never a sleep),
killed and restarted exactly as an operator or a crash would.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

# A part that exits with EXIT_RESTART asks to be started again, as Kubernetes' restartPolicy
# would do; any other exit of a part nobody stopped is a failure.
from henvis.stream import EXIT_RESTART


class SupervisorError(RuntimeError):
    """A part did not start, did not become ready, or died."""


@dataclass
class Part:
    """One part of the pipeline: how to start it and how to tell it is ready."""

    name: str
    args: list[str]
    ready_url: str | None = None  # an HTTP URL answering 200 when ready
    ready_log_event: str | None = "worker_ready"  # or a JSON log event it writes when ready
    env: dict[str, str] = field(default_factory=dict)


@dataclass
class Child:
    part: Part
    process: subprocess.Popen
    log_path: Path
    log_offset: int  # where this incarnation's output starts in the log file

    @property
    def alive(self) -> bool:
        return self.process.poll() is None


class Supervisor:
    def __init__(self, run_dir: Path, env: dict[str, str], python: str = sys.executable):
        self.run_dir = Path(run_dir)
        self.log_dir = self.run_dir / "logs"
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.env = env
        self.python = python
        self.children: dict[str, Child] = {}
        self.self_restarts: dict[str, int] = {}

    # ------------------------------------------------------------------ start / stop

    def start(self, part: Part, timeout: float = 90) -> Child:
        """Start ``part`` and wait until it is ready."""
        child = self.spawn(part)
        self.wait_ready(child, timeout)
        return child

    def spawn(self, part: Part) -> Child:
        log_path = self.log_dir / f"{part.name}.log"
        offset = log_path.stat().st_size if log_path.exists() else 0
        log_file = open(log_path, "ab")  # noqa: SIM115 - the child writes to it; closed when it is stopped
        process = subprocess.Popen(
            [self.python, "-m", "henvis.cli", *part.args],
            stdout=log_file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, **self.env, **part.env},
            cwd=self.run_dir,
            start_new_session=True,  # our Ctrl-C is ours to pass on, in order
        )
        log_file.close()
        child = Child(part, process, log_path, offset)
        self.children[part.name] = child
        return child

    def wait_ready(self, child: Child, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not child.alive:
                raise SupervisorError(
                    f"{child.part.name} exited with code {child.process.returncode} while starting; "
                    f"last lines of {child.log_path}:\n{self.tail(child)}"
                )
            if self._is_ready(child):
                return
            time.sleep(0.1)
        raise SupervisorError(f"{child.part.name} was not ready after {timeout:.0f}s; last lines:\n{self.tail(child)}")

    def _is_ready(self, child: Child) -> bool:
        if child.part.ready_url:
            try:
                return httpx.get(child.part.ready_url, timeout=2).status_code == 200
            except httpx.HTTPError:
                return False
        return any(record.get("event") == child.part.ready_log_event for record in self.log_records(child))

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        """Kill a part the hard way (as a crash would) and reap it."""
        child = self.children[name]
        if child.alive:
            os.killpg(child.process.pid, sig)
            child.process.wait(timeout=30)

    def restart(self, name: str, timeout: float = 90) -> Child:
        return self.start(self.children[name].part, timeout)

    def stop(self, name: str, timeout: float = 20) -> None:
        """SIGTERM, then SIGKILL if it does not finish in time."""
        child = self.children[name]
        if not child.alive:
            return
        os.killpg(child.process.pid, signal.SIGTERM)
        try:
            child.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(child.process.pid, signal.SIGKILL)
            child.process.wait(timeout=10)

    def stop_all(self, timeout: float = 20) -> None:
        """Stop every part, last started first (APIs before the workers they feed)."""
        for name in reversed(list(self.children)):
            self.stop(name, timeout)

    def check_alive(self, restart_timeout: float = 90) -> None:
        """Raise if a part died; start again a part that exited asking for it (EXIT_RESTART)."""
        for child in list(self.children.values()):
            if child.alive:
                continue
            if child.process.returncode != EXIT_RESTART:
                raise SupervisorError(f"{child.part.name} died (exit {child.process.returncode}):\n{self.tail(child)}")
            name = child.part.name
            self.self_restarts[name] = self.self_restarts.get(name, 0) + 1
            print(f"{name} exited asking to be restarted (exit {EXIT_RESTART}); restarting it", file=sys.stderr)
            self.start(child.part, restart_timeout)

    # ------------------------------------------------------------------ logs

    def log_records(self, child: Child) -> list[dict]:
        """This incarnation's JSON log records (non-JSON lines are skipped)."""
        with open(child.log_path, "rb") as handle:
            handle.seek(child.log_offset)
            records = []
            for line in handle:
                try:
                    records.append(json.loads(line))
                except ValueError:
                    continue
        return records

    def tail(self, child: Child, lines: int = 25) -> str:
        text = child.log_path.read_text(encoding="utf-8", errors="replace") if child.log_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def all_log_text(self) -> str:
        return "\n".join(
            path.read_text(encoding="utf-8", errors="replace") for path in sorted(self.log_dir.glob("*.log"))
        )
