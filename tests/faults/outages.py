"""Broker outages under a steady load, for the router and the stats worker.

One harness for the CI-sized test (``test_broker_outages.py``) and the long soak
(``bench/outage_soak.py``): its own Kafka broker, a ``henvis router worker`` and a
``henvis stats worker`` as child processes, decisions fed onto ``consent.decisions.v2`` at a
steady rate throughout, and a sampler that records when each worker last made progress:

* the router: its group's committed offsets on ``consent.decisions.v2`` (readable only while
  the broker is up; the router copies them from its changelog every 0.2 s here, as often as
  the sampler looks, instead of its default second);
* the stats worker: the events applied in its SQLite database (readable at any time).

For every outage (broker stopped, down for a while, started again on the same data) it
reports how long each worker went without progress beyond the outage itself.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import sqlalchemy as sa

from henvis.kafka import centre_topic_name, ensure_topics, henvis_topics
from henvis.registry import load_registry
from henvis.schemas.events import parse_event
from henvis.settings import KafkaSettings
from henvis_dev import broker, loadgen
from tests.helpers import free_port, wait_until

REGISTRY = load_registry()
WORKERS = ("router", "stats")
SEED = 21
# The broker's transaction coordinator, when it completes a commit after a restart before
# the partitions have a leader again, skips their markers as if they had been deleted
# (KAFKA-5202's rule); it says so in its log.
_SKIPPED_MARKERS = re.compile(
    r"Couldn't find leader endpoint for partitions \w*\((?P<partitions>[^)]*)\) while trying to send transaction markers"
)


@dataclass
class Outage:
    started: float  # time.monotonic() of the broker's stop
    down_for: float  # seconds from the broker's stop to its answering again
    #: worker -> seconds from the stop to its first progress afterwards
    resumed_after: dict[str, float] = field(default_factory=dict)

    def beyond(self, worker: str) -> float:
        """How long the worker went without progress after the broker was back."""
        return self.resumed_after[worker] - self.down_for


class OutageLoop:
    def __init__(
        self, run_dir: Path, session_timeout_seconds: float = 10.0, per_second: float = 25.0, decisions: int = 40_000
    ):
        self.run_dir = Path(run_dir)
        self.session_timeout_seconds = session_timeout_seconds
        self.port = free_port()
        self.kafka = KafkaSettings(bootstrap_servers=f"127.0.0.1:{self.port}", topic_prefix="outage.", partitions=3)
        self.stats_db = f"sqlite:///{self.run_dir / 'stats.db'}"
        self.expected = loadgen.mixed_decisions(decisions, REGISTRY, seed=SEED)
        self.feeder = loadgen.Feeder(self.kafka, self.expected.messages, per_second=per_second)
        self.processes: dict[str, subprocess.Popen] = {}
        self.outages: list[Outage] = []
        # worker -> (progress value, monotonic time it last grew)
        self._progress: dict[str, tuple[int, float]] = {}
        # worker -> every monotonic time its progress was seen to grow
        self._grew: dict[str, list[float]] = {worker: [] for worker in WORKERS}
        self._sampling = threading.Event()
        self._sampler: threading.Thread | None = None

    # ------------------------------------------------------------ lifecycle

    def start(self) -> OutageLoop:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        broker.start(self.broker_dir, port=self.port, progress=lambda _message: None)
        ensure_topics(self.kafka, henvis_topics(self.kafka, REGISTRY))
        for worker in WORKERS:
            self._start_worker(worker)
        wait_until(
            lambda: all(self._logged(w, "worker_ready") for w in WORKERS), timeout=120, message="workers not ready"
        )
        self.feeder.start()
        self._sampling.set()
        self._sampler = threading.Thread(target=self._sample, name="outage-sampler", daemon=True)
        self._sampler.start()
        self.wait_for_progress(timeout=120)
        return self

    def stop(self) -> None:
        self._sampling.clear()
        for process in self.processes.values():
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(60)
                except subprocess.TimeoutExpired:
                    process.kill()
        with contextlib.suppress(Exception):  # the test's own failure is the one worth reporting
            broker.stop(self.broker_dir)

    @property
    def broker_dir(self) -> Path:
        return self.run_dir / "kafka"

    def _start_worker(self, worker: str) -> None:
        prefix = worker.upper()
        env = {
            **os.environ,
            "HENVIS_KAFKA_BOOTSTRAP_SERVERS": self.kafka.bootstrap_servers,
            "HENVIS_KAFKA_TOPIC_PREFIX": self.kafka.topic_prefix,
            "HENVIS_KAFKA_PARTITIONS": str(self.kafka.partitions),
            f"HENVIS_{prefix}_SESSION_TIMEOUT_SECONDS": str(self.session_timeout_seconds),
            "HENVIS_STATS_DATABASE_URL": self.stats_db,
            "HENVIS_RUN_DIR": str(self.run_dir),
            "HENVIS_LOG_LEVEL": "INFO",
            # The sampler reads the router's progress from this copy of its changelog's offsets.
            "HENVIS_ROUTER_GROUP_COMMIT_SECONDS": "0.2",
        }
        log = open(self.log_path(worker), "ab")  # noqa: SIM115 - the child holds it open
        self.processes[worker] = subprocess.Popen(
            [str(Path(sys.executable).with_name("henvis")), worker, "worker"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()

    def log_path(self, worker: str) -> Path:
        return self.run_dir / f"{worker}.log"

    def _logged(self, worker: str, event: str) -> bool:
        process = self.processes[worker]
        if process.poll() is not None:
            raise RuntimeError(f"{worker} exited with {process.returncode}")
        return any(line.get("event") == event for line in self.log_lines(worker))

    def log_lines(self, worker: str) -> list[dict]:
        """Every line the worker wrote, parsed; a line that is not one JSON object raises."""
        return [json.loads(line) for line in self.log_path(worker).read_text(errors="strict").splitlines() if line]

    # ------------------------------------------------------------ progress

    def _sample(self) -> None:
        while self._sampling.is_set():
            for worker, read in (("router", self._router_progress), ("stats", self._stats_progress)):
                try:
                    value = read()
                except Exception:  # noqa: BLE001 - the broker or the database is away: no reading
                    continue
                last = self._progress.get(worker)
                if last is None or value > last[0]:
                    now = time.monotonic()
                    self._progress[worker] = (value, now)
                    self._grew[worker].append(now)
            time.sleep(0.2)

    def _router_progress(self) -> int:
        return loadgen.committed_total(self.kafka, f"{self.kafka.topic_prefix}henvis-router")

    def _stats_progress(self) -> int:
        engine = sa.create_engine(self.stats_db)
        try:
            with engine.connect() as connection:
                return connection.execute(sa.text("SELECT count(*) FROM processed_events")).scalar_one()
        finally:
            engine.dispose()

    def progressed_since(self, moment: float) -> dict[str, bool]:
        return {worker: (self._progress.get(worker, (0, 0.0))[1] > moment) for worker in WORKERS}

    def wait_for_progress(self, timeout: float) -> None:
        moment = time.monotonic()
        wait_until(
            lambda: all(self.progressed_since(moment).values()),
            timeout=timeout,
            interval=0.2,
            message="a worker made no progress",
        )

    # ------------------------------------------------------------ outages

    def outage(self, seconds: float, give_up_after: float = 300, crash: bool = False) -> Outage:
        """Stop the broker, keep it down ``seconds``, start it again; wait until both workers
        progress again (at most ``give_up_after`` seconds) and say when they did.

        Progress counts from the broker's return: a worker may still drain what it fetched
        before the outage while the broker is down."""
        stopped = time.monotonic()
        broker.stop(self.broker_dir, crash=crash)
        time.sleep(max(0.0, seconds - (time.monotonic() - stopped)))
        broker.start(self.broker_dir, port=self.port, progress=lambda _message: None)
        back = time.monotonic()
        outage = Outage(started=stopped, down_for=back - stopped)
        deadline = back + give_up_after
        while time.monotonic() < deadline and len(outage.resumed_after) < len(WORKERS):
            for worker in WORKERS:
                grew = [moment for moment in self._grew[worker] if moment >= back]
                if grew and worker not in outage.resumed_after:
                    outage.resumed_after[worker] = grew[0] - stopped
            for worker, process in self.processes.items():
                if process.poll() is not None:
                    raise RuntimeError(f"{worker} exited with {process.returncode} after an outage")
            time.sleep(0.2)
        for worker in WORKERS:
            outage.resumed_after.setdefault(worker, float("inf"))
        self.outages.append(outage)
        return outage

    def finish(self, timeout: float = 600) -> None:
        """Stop feeding and wait until both workers have handled everything fed."""
        self.feeder.stop()
        fed = self.feeder.sent
        wait_until(
            lambda: self._router_progress() >= fed, timeout=timeout, interval=0.5, message="router did not catch up"
        )
        wait_until(
            lambda: self._stats_progress() >= fed, timeout=timeout, interval=0.5, message="stats did not catch up"
        )

    def delivered(self) -> loadgen.Expected:
        """What the router must have made of the decisions fed so far (a prefix of the mix
        is itself a mix: the generator decides each decision from the earlier ones only)."""
        return loadgen.mixed_decisions(self.feeder.sent, REGISTRY, seed=SEED)

    def partitions_with_skipped_markers(self) -> set[str]:
        """``topic-partition`` names whose transaction markers the broker logged as skipped."""
        found: set[str] = set()
        for log in sorted((self.broker_dir / "logs").glob("server.log*")):
            for match in _SKIPPED_MARKERS.finditer(log.read_text(errors="replace")):
                found.update(name.strip() for name in match["partitions"].split(","))
        return found

    def duplicate_referrals(self) -> dict[str, list[str]]:
        """Referral ids issued more than once (read_committed), with the partition and offset
        of every copy: ``{referral_id: ["<topic>-<partition>@<offset>", ...]}``."""
        copies: dict[str, list[str]] = {}
        for slug in REGISTRY.slugs:
            topic = centre_topic_name(slug, self.kafka, REGISTRY)
            for record in loadgen.read_records(self.kafka, topic):
                event = parse_event(record.value)
                if event.event_type == "referral.issued":
                    copies.setdefault(str(event.referral_id), []).append(f"{topic}-{record.partition}@{record.offset}")
        return {referral: where for referral, where in copies.items() if len(where) > 1}

    def report(self) -> str:
        lines = [f"{'outage':>7} {'down s':>7} " + " ".join(f"{w + ' +s':>9}" for w in WORKERS)]
        for number, outage in enumerate(self.outages, 1):
            lines.append(f"{number:>7} {outage.down_for:7.1f} " + " ".join(f"{outage.beyond(w):9.1f}" for w in WORKERS))
        worst = {w: max(o.beyond(w) for o in self.outages) for w in WORKERS}
        lines.append(
            "longest time without progress after the broker was back: "
            + ", ".join(f"{w} {s:.1f} s" for w, s in worst.items())
            + f" (session timeout {self.session_timeout_seconds:.0f} s)"
        )
        return "\n".join(lines)
