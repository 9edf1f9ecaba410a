"""Consent settings and the relay's producer timeouts."""

from __future__ import annotations

import pytest

from henvis.services.consent.publisher import relay_producer_config
from henvis.services.consent.settings import ConsentSettings


def test_default_database_is_a_sqlite_file_in_the_run_dir(monkeypatch, tmp_path) -> None:
    monkeypatch.delenv("HENVIS_CONSENT_DATABASE_URL", raising=False)
    monkeypatch.setenv("HENVIS_RUN_DIR", str(tmp_path))
    assert ConsentSettings().database_url == f"sqlite:///{tmp_path}/consent.db"


def test_settings_come_from_the_consent_prefix_and_shared_names(monkeypatch) -> None:
    monkeypatch.setenv("HENVIS_CONSENT_RELAY_BATCH_SIZE", "42")
    monkeypatch.setenv("HENVIS_KAFKA_TOPIC_PREFIX", "demo.")
    monkeypatch.setenv("HENVIS_LOG_LEVEL", "DEBUG")
    settings = ConsentSettings()
    assert (settings.relay_batch_size, settings.kafka.topic_prefix, settings.log_level) == (42, "demo.", "DEBUG")


@pytest.mark.parametrize("lease_seconds", [30, 60, 600])
def test_every_delivery_result_is_known_before_the_lease_runs_out(lease_seconds: float) -> None:
    config = relay_producer_config(ConsentSettings(relay_lease_seconds=lease_seconds), "test")
    assert config["acks"] == "all" and config["enable_idempotence"] is True
    assert config["max_block_ms"] + config["delivery_timeout_ms"] < lease_seconds * 1000
    assert config["delivery_timeout_ms"] >= config["request_timeout_ms"] + config["linger_ms"]
