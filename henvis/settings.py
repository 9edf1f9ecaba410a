"""Settings shared by every service, read from ``HENVIS_*`` environment variables.

Each service defines exactly one settings model that subclasses :class:`ServiceSettings`
with its own ``env_prefix`` (``HENVIS_CONSENT_``, ``HENVIS_ROUTER_`` ...).  The fields
declared here are shared by all services and are read from their un-prefixed names
(``HENVIS_KAFKA_BOOTSTRAP_SERVERS``, ``HENVIS_LOG_LEVEL`` ...), so one ConfigMap can
configure the whole deployment.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


def _shared(name: str, **kwargs):
    """A field read from ``HENVIS_<NAME>`` whatever the subclass's prefix is."""
    return Field(validation_alias=AliasChoices(f"HENVIS_{name.upper()}", name), **kwargs)


class KafkaSettings(BaseSettings):
    """How to reach the Kafka cluster; TLS/SASL are for production clusters."""

    model_config = SettingsConfigDict(env_prefix="HENVIS_KAFKA_", extra="ignore")

    bootstrap_servers: str = "127.0.0.1:9092"
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    ssl_cafile: Path | None = None
    # Prefix added to every topic name; lets tests (and shared clusters) keep topics apart.
    topic_prefix: str = ""
    # Partitions for topics henvis creates itself (more partitions = more parallel workers).
    partitions: int = Field(default=6, ge=1)
    replication_factor: int = Field(default=1, ge=1)
    # Bounded retention for topics that carry personal data (DESIGN §6.5).
    personal_data_retention_days: int = Field(default=14, ge=1)
    # Facts and outcomes are pseudonymous; keeping them lets the stats database be rebuilt.
    pseudonymous_retention_days: int = Field(default=730, ge=1)


class ServiceSettings(BaseSettings):
    """Base of every service's settings model."""

    model_config = SettingsConfigDict(env_prefix="HENVIS_", extra="ignore")

    log_level: str = _shared("log_level", default="INFO")
    registry_path: Path | None = _shared(
        "registry_path", default=None, description="Centre registry file; the packaged one when unset."
    )
    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    api_clients_file: Path | None = _shared(
        "api_clients_file", default=None, description="YAML/JSON list of API clients (name, role, token_sha256)."
    )
    api_clients: str | None = _shared("api_clients", default=None, description="The same list as inline JSON.")
