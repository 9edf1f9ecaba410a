"""The fault suite's pipeline: every henvis part as its own process, on infrastructure we may break.

One pipeline per session (``fault_pipeline``), shared by the fault run and the security sweep:

* its own Kafka broker (its own run folder and port), so stopping it disturbs no other test;
* its own throwaway PostgreSQL cluster (``tools/postgres.sh`` on its own port) holding only the
  consent service's database, so stopping it takes the database away from the consent API
  and nothing else;
* the centre and stats on SQLite files in the run folder, read directly by the checks;
* short consumer-group session timeouts, so a restarted worker gets its partitions back in
  seconds instead of the production defaults (30–60 s) — the faults are the same, the suite
  just waits less for the broker to notice a dead member.

Every part is started by :class:`henvis_dev.supervisor.Supervisor` exactly as ``henvis demo``
does (``henvis_dev.demo.pipeline_parts``), with its JSON log in ``<run dir>/logs/``.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from threading import Lock

import httpx
import pytest

from henvis_dev import broker
from henvis_dev.demo import Credentials, Ports, add_caseworkers, make_credentials, pipeline_parts, service_env
from henvis_dev.supervisor import Supervisor
from tests.helpers import free_port

REPO_ROOT = Path(__file__).resolve().parents[2]
POSTGRES_SCRIPT = REPO_ROOT / "tools" / "postgres.sh"
WORKERS = ("consent-relay", "router", "centre-worker", "stats-worker")
SESSION_TIMEOUT_SECONDS = 6  # the lowest the services accept


@dataclass
class DedicatedPostgres:
    """A PostgreSQL cluster of its own, stopped and started by the fault schedule."""

    port: int
    run_dir: Path
    url: str = ""

    def _run(self, command: str) -> str:
        env = {**os.environ, "HENVIS_PG_PORT": str(self.port), "HENVIS_RUN_DIR": str(self.run_dir)}
        result = subprocess.run([str(POSTGRES_SCRIPT), command], env=env, capture_output=True, text=True, timeout=180)
        if result.returncode != 0:
            raise RuntimeError(f"tools/postgres.sh {command} failed:\n{result.stdout}\n{result.stderr}")
        return result.stdout.strip()

    def start(self) -> str:
        self.url = self._run("start").splitlines()[-1]
        return self.url

    def stop(self) -> None:
        self._run("stop")

    def reset(self) -> None:
        self._run("reset")


@dataclass
class FaultPipeline:
    run_dir: Path
    ports: Ports
    supervisor: Supervisor
    credentials: Credentials
    postgres: DedicatedPostgres
    consent_database_url: str
    centre_database_url: str
    stats_database_url: str
    #: the environment every part runs with (its key-encryption keys included)
    env: dict[str, str] = field(default_factory=dict)
    #: every piece of personal data any test submitted, for the log scan
    submitted_personal_data: set[str] = field(default_factory=set)
    personal_data_lock: Lock = field(default_factory=Lock)

    @property
    def broker_dir(self) -> Path:
        return self.run_dir / "kafka"

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.ports.broker}"

    def url(self, service: str) -> str:
        return f"http://127.0.0.1:{getattr(self.ports, service)}"

    def token(self, role: str) -> str:
        return self.credentials.tokens[role]

    def remember_personal_data(self, values) -> None:
        with self.personal_data_lock:
            self.submitted_personal_data.update(value for value in values if value)

    def start_broker(self) -> None:
        broker.start(self.broker_dir, port=self.ports.broker, progress=lambda _message: None)

    def stop_broker(self) -> None:
        broker.stop(self.broker_dir)

    def post_decision(self, body: bytes, timeout: float = 10) -> httpx.Response:
        return httpx.post(
            f"{self.url('consent')}/v1/decisions",
            content=body,
            headers={"Authorization": f"Bearer {self.token('police')}", "Content-Type": "application/json"},
            timeout=timeout,
        )


@pytest.fixture(scope="session")
def fault_pipeline(tmp_path_factory: pytest.TempPathFactory):
    run_dir = tmp_path_factory.mktemp("faults") / "run"
    run_dir.mkdir()
    ports = Ports(broker=free_port(), consent=free_port(), centre=free_port(), stats=free_port())
    postgres = DedicatedPostgres(port=free_port(), run_dir=run_dir / "pg")
    supervisor = None
    try:
        consent_database_url = postgres.start()
        broker.start(run_dir / "kafka", port=ports.broker, progress=lambda _message: None)
        credentials = make_credentials(run_dir)
        centre_database_url = f"sqlite:///{run_dir / 'centre.db'}"
        stats_database_url = f"sqlite:///{run_dir / 'stats.db'}"
        env = {
            **service_env(run_dir, ports, credentials),
            "HENVIS_KAFKA_TOPIC_PREFIX": "",
            "HENVIS_CONSENT_DATABASE_URL": consent_database_url,
            "HENVIS_CENTRE_DATABASE_URL": centre_database_url,
            "HENVIS_STATS_DATABASE_URL": stats_database_url,
            # a killed relay's leased outbox rows come back after this (the lowest allowed)
            "HENVIS_CONSENT_RELAY_LEASE_SECONDS": "30",
            "HENVIS_ROUTER_SESSION_TIMEOUT_SECONDS": str(SESSION_TIMEOUT_SECONDS),
            "HENVIS_CENTRE_CONSUMER_SESSION_TIMEOUT_MS": str(SESSION_TIMEOUT_SECONDS * 1000),
            "HENVIS_STATS_SESSION_TIMEOUT_SECONDS": str(SESSION_TIMEOUT_SECONDS),
        }
        if os.environ.get("HENVIS_FAULT_DYNAMIC_MEMBERSHIP") == "1":
            # The workers default to static membership (the host name); this measures the
            # slower recovery of dynamic membership: a restart waits for the dead session.
            env["HENVIS_ROUTER_INSTANCE_ID"] = env["HENVIS_STATS_INSTANCE_ID"] = ""
        supervisor = Supervisor(run_dir, env)
        add_caseworkers(supervisor, credentials)
        for part in pipeline_parts(ports):
            supervisor.start(part, timeout=180)
        yield FaultPipeline(
            run_dir=run_dir,
            ports=ports,
            supervisor=supervisor,
            credentials=credentials,
            postgres=postgres,
            consent_database_url=consent_database_url,
            centre_database_url=centre_database_url,
            stats_database_url=stats_database_url,
            env=env,
        )
    finally:
        # each step on its own, so one failing never leaves the others' processes behind
        try:
            if supervisor is not None:
                supervisor.stop_all()
        finally:
            try:
                broker.stop(run_dir / "kafka")
            finally:
                postgres.reset()  # stop it and delete its data: nothing of the run stays behind


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Run the crypto-shredding marker test after the fault run on the shared pipeline.

    The marker test posts and withdraws cases of its own; the fault run's expected figures
    (inbox, stats) count only what its load generator sent, so those cases must come after.
    """
    marker_test = "test_crypto_shredding.py"
    markers = [item for item in items if item.path.name == marker_test]
    rest = [item for item in items if item.path.name != marker_test]
    fault_run = [n for n, item in enumerate(rest) if item.path.name == "test_pipeline_faults.py"]
    if markers and fault_run:
        items[:] = rest[: fault_run[-1] + 1] + markers + rest[fault_run[-1] + 1 :]
