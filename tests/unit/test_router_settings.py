"""Router configuration: what an operator sets through HENVIS_ROUTER_* and what it means."""

from __future__ import annotations

import socket

import pytest
from pydantic import ValidationError

from henvis.services.router.settings import RouterSettings


def test_defaults_keep_the_router_isolated_per_topic_prefix(monkeypatch):
    monkeypatch.setenv("HENVIS_KAFKA_TOPIC_PREFIX", "t1234.")

    settings = RouterSettings()

    assert settings.group_id == "t1234.henvis-router"
    assert settings.changelog_topic == "t1234.henvis-router-cases-changelog"
    assert settings.withdrawal_wait_seconds == 7 * 24 * 3600


def test_a_restarted_router_is_the_same_static_member_by_default(monkeypatch):
    # The host name is the pod name in Kubernetes: a restarted container rejoins as the same
    # member and takes its partitions back without a rebalance.
    monkeypatch.delenv("HENVIS_ROUTER_INSTANCE_ID", raising=False)
    assert RouterSettings().instance_id == socket.gethostname()

    monkeypatch.setenv("HENVIS_ROUTER_INSTANCE_ID", "router-1")
    assert RouterSettings().instance_id == "router-1"

    monkeypatch.setenv("HENVIS_ROUTER_INSTANCE_ID", "")
    assert RouterSettings().instance_id is None  # dynamic membership


def test_an_instance_id_kafka_would_refuse_stops_the_router_at_start(monkeypatch):
    monkeypatch.setenv("HENVIS_ROUTER_INSTANCE_ID", "router 1/../x")

    with pytest.raises(ValidationError) as excinfo:
        RouterSettings()

    assert "instance_id" in str(excinfo.value)


def test_environment_sets_the_waiting_time_and_check_interval(monkeypatch):
    monkeypatch.setenv("HENVIS_ROUTER_WITHDRAWAL_WAIT_SECONDS", "2")

    settings = RouterSettings()

    assert settings.withdrawal_wait_seconds == 2
    assert settings.check_interval_seconds == 0.5  # a quarter of the wait
