"""The container image as the Helm chart runs it (issue 17): the consent API answers /readyz
against the real PostgreSQL, and a router joins the real broker and routes one decision.

Each container runs with the chart's security settings: uid/gid 10001 (not root), a read-only
root filesystem with only /tmp and /run/henvis writable, every capability dropped, no
privilege escalation. Host networking reaches the shared test broker and database on
127.0.0.1.

The image is built by ``make image`` (``tools/image.sh``) before pytest runs in ``make test``;
``HENVIS_IMAGE`` names another tag. Without podman or without the image the tests skip and say
why, unless ``HENVIS_REQUIRE_IMAGE=1`` (set by ``.ci/run``): then that is a failure.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tomllib
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from henvis.kafka import centre_topic_name, ensure_topics, henvis_topics
from henvis.registry import load_registry
from henvis.schemas.events import ConsentGiven, parse_event
from henvis_dev import loadgen
from tests.consent_support import KEY_ENV
from tests.helpers import free_port, wait_until

ROOT = Path(__file__).resolve().parents[2]
PODMAN = str(ROOT / "tools" / "podman.sh")
VERSION = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
IMAGE = os.environ.get("HENVIS_IMAGE", f"localhost/henvis:{VERSION}")
UID = "10001"
REGISTRY = load_registry()
# What helm/henvis/values.yaml's securityContext and scratch volumes amount to under podman.
CHART_SECURITY = [
    f"--user={UID}:{UID}",
    "--read-only",
    "--read-only-tmpfs=false",
    "--tmpfs=/tmp:rw,nosuid,nodev,size=64m,mode=1777",
    # An emptyDir the pod's user may write (the chart: fsGroup); podman 4.3 ignores a tmpfs
    # mode= here and takes no uid=, but chowns the mount to the container's user.
    "--mount=type=tmpfs,destination=/run/henvis,chown=true,tmpfs-size=64m",
    "--cap-drop=ALL",
    "--security-opt=no-new-privileges",
    # The limits these machines need (tools/podman.sh).
    "--ulimit=nofile=1024:1024",
    "--ulimit=nproc=4096:4096",
    "--network=host",
]
PERSONAL = ("Test Person", "30405060", "4100-00000-00003-24")


def podman(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([PODMAN, *args], capture_output=True, text=True, check=False, timeout=300)
    if check and result.returncode != 0:
        pytest.fail(f"podman {args[0]} exited {result.returncode}: {result.stderr.strip()}", pytrace=False)
    return result


@pytest.fixture(scope="session")
def image() -> str:
    """The image tag, once podman and the image are known to be there."""
    required = os.environ.get("HENVIS_REQUIRE_IMAGE", "") == "1"

    def unavailable(reason: str) -> None:
        if required:
            pytest.fail(f"{reason}; HENVIS_REQUIRE_IMAGE=1, so this is a failure, not a skip", pytrace=False)
        pytest.skip(reason)

    if shutil.which("podman") is None:
        unavailable("podman is not installed (apt-get install podman runc; .ci/run does)")
    if podman("image", "exists", IMAGE, check=False).returncode != 0:
        unavailable(f"image {IMAGE} is not built: run `make image`")
    return IMAGE


@pytest.fixture
def container(image: str) -> Iterator[Callable[..., str]]:
    """Start a detached container of the image with the chart's security settings; removed after."""
    started: list[str] = []

    def start(*args: str, env: dict[str, str]) -> str:
        name = f"henvis-smoke-{uuid.uuid4().hex[:8]}"
        env_args = [f"--env={key}={value}" for key, value in env.items()]
        podman("run", "--detach", f"--name={name}", *CHART_SECURITY, *env_args, image, *args)
        started.append(name)
        return name

    yield start
    for name in started:
        logs = podman("logs", name, check=False)
        print(f"\n--- {name}\n{logs.stdout}{logs.stderr}")
        podman("rm", "--force", "--time=5", name, check=False)


def running(name: str) -> bool:
    state = json.loads(podman("inspect", "--format={{json .State}}", name).stdout)
    return bool(state["Running"])


def logs_of(name: str) -> str:
    result = podman("logs", name)
    return result.stdout + result.stderr


def assert_runs_as_the_chart_says(name: str) -> None:
    """Not root, and nothing outside the scratch mounts can be written."""
    assert podman("exec", name, "id", "-u").stdout.strip() == UID
    denied = podman("exec", name, "touch", "/opt/henvis/written", check=False)
    assert denied.returncode != 0
    assert "Read-only file system" in denied.stderr
    assert podman("exec", name, "touch", "/tmp/written", "/run/henvis/written", check=False).returncode == 0


@pytest.fixture
def consent_database(_postgres_admin_engine) -> Iterator[str]:
    from sqlalchemy import text

    name = f"henvis_test_{uuid.uuid4().hex[:16]}"
    with _postgres_admin_engine.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield _postgres_admin_engine.url.set(database=name).render_as_string(hide_password=False)
    finally:
        with _postgres_admin_engine.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def test_the_consent_api_container_answers_readyz_against_postgresql(container, consent_database):
    port = free_port()
    name = container(
        "consent",
        "serve",
        "--host=127.0.0.1",
        f"--port={port}",
        env={"HENVIS_CONSENT_DATABASE_URL": consent_database, "HENVIS_LOG_LEVEL": "INFO", **KEY_ENV},
    )

    def ready() -> httpx.Response | None:
        assert running(name), f"the consent API container exited:\n{logs_of(name)}"
        try:
            response = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=5)
        except httpx.TransportError:
            return None
        return response if response.status_code == 200 else None

    response = wait_until(ready, timeout=180, message="the consent API container never answered /readyz with 200")
    assert response.json() == {"status": "ready"}
    assert_runs_as_the_chart_says(name)


def test_a_router_container_joins_the_broker_and_routes_one_decision(container, kafka_settings):
    ensure_topics(kafka_settings, henvis_topics(kafka_settings, REGISTRY))
    metrics_port = free_port()
    name = container(
        "router",
        "worker",
        env={
            "HENVIS_KAFKA_BOOTSTRAP_SERVERS": kafka_settings.bootstrap_servers,
            "HENVIS_KAFKA_TOPIC_PREFIX": kafka_settings.topic_prefix,
            "HENVIS_KAFKA_PARTITIONS": str(kafka_settings.partitions),
            "HENVIS_ROUTER_INSTANCE_ID": "router-0",
            "HENVIS_ROUTER_METRICS_PORT": str(metrics_port),
            "HENVIS_LOG_LEVEL": "INFO",
        },
    )
    occurred_at = datetime.now(UTC)
    consent = ConsentGiven(
        event_id=uuid.uuid4(),
        occurred_at=occurred_at,
        case_ref=PERSONAL[2],
        offence="drink_driving",
        charged_on=occurred_at.date(),
        municipality_code="787",
        person={"full_name": PERSONAL[0], "phone": "+45" + PERSONAL[1]},
        consent_text_version="v1",
        recorded_by="test",
    )
    published = loadgen.sealed(consent, {})  # as the consent relay publishes it: case pseudonym, sealed details
    loadgen.produce(kafka_settings, [(published.kafka_key(), published.to_bytes())])

    def routed() -> list:
        assert running(name), f"the router container exited:\n{logs_of(name)}"
        topic = centre_topic_name("thisted", kafka_settings, REGISTRY)
        return [parse_event(value) for _, value in loadgen.read_all(kafka_settings, topic)]

    [referral] = wait_until(routed, timeout=180, message="the router container routed nothing to thisted")
    assert referral.event_type == "referral.issued"
    metrics = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5).text
    assert "henvis_worker_ready 1.0" in metrics
    assert 'henvis_router_referrals_total{centre="thisted"} 1.0' in metrics
    assert_runs_as_the_chart_says(name)
    log_text = logs_of(name)
    for personal in PERSONAL:
        assert personal not in log_text
