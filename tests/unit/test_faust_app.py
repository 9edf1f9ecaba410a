"""The faust fixes every henvis worker relies on (henvis/faust_app.py)."""

from __future__ import annotations

from henvis.faust_app import HenvisApp, IdempotentProducer, app_options
from henvis.settings import KafkaSettings


def app(tmp_path) -> HenvisApp:
    return HenvisApp("test-app", **app_options(KafkaSettings(bootstrap_servers="127.0.0.1:1"), tmp_path))


def test_producer_is_idempotent_and_waits_for_all_replicas(tmp_path):
    producer = app(tmp_path).producer
    assert isinstance(producer, IdempotentProducer)
    extra = producer._settings_extra()
    assert extra["acks"] == "all" and extra["enable_idempotence"] is True


def test_apps_are_at_least_once_without_a_web_port(tmp_path):
    options = app_options(KafkaSettings(), tmp_path, session_timeout_seconds=9)
    assert options["processing_guarantee"] == "at_least_once"
    assert options["web_enabled"] is False
    assert options["broker_session_timeout"] == 9 and options["broker_heartbeat_interval"] == 3
