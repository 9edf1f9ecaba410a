"""Fixtures shared by the integration tests that run ``henvis router worker`` processes."""

from __future__ import annotations

import pytest

from henvis.kafka import ensure_topics, henvis_topics
from henvis.registry import load_registry
from henvis_dev import loadgen

REGISTRY = load_registry()


@pytest.fixture
def router_env(kafka_settings, tmp_path) -> dict[str, str]:
    ensure_topics(kafka_settings, henvis_topics(kafka_settings, REGISTRY))
    return {
        "HENVIS_KAFKA_BOOTSTRAP_SERVERS": kafka_settings.bootstrap_servers,
        "HENVIS_KAFKA_TOPIC_PREFIX": kafka_settings.topic_prefix,
        "HENVIS_KAFKA_PARTITIONS": str(kafka_settings.partitions),
        "HENVIS_ROUTER_SESSION_TIMEOUT_SECONDS": "6",
        # The tests follow the router's progress through the group's committed offsets, a copy
        # of the changelog's made at most once a second by default: copy it as often as the
        # outage harness does, so "processed" is seen when it happens.
        "HENVIS_ROUTER_GROUP_COMMIT_SECONDS": "0.2",
        "HENVIS_LOG_LEVEL": "INFO",
    }


@pytest.fixture
def workers(router_env, tmp_path):
    """Start router workers; every one still running is stopped at the end of the test."""
    started: list[loadgen.RouterProcess] = []

    def start(name: str = "router", **extra_env: str) -> loadgen.RouterProcess:
        # Each worker its own static member id (by default all would take the host name).
        env = {**router_env, "HENVIS_ROUTER_INSTANCE_ID": name, **extra_env}
        worker = loadgen.RouterProcess(env, tmp_path / f"{name}.log", name=name).start()
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.kill()
