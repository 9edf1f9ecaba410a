"""Settings shared by every service, read from ``HENVIS_*`` environment variables.

Each service defines exactly one settings model that subclasses :class:`ServiceSettings`
with its own ``env_prefix`` (``HENVIS_CONSENT_``, ``HENVIS_ROUTER_`` ...).  The fields
declared here are shared by all services and are read from their un-prefixed names
(``HENVIS_KAFKA_BOOTSTRAP_SERVERS``, ``HENVIS_LOG_LEVEL`` ...), so one ConfigMap can
configure the whole deployment.
"""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from henvis.access_tokens import DEFAULT_ALGORITHMS, SUPPORTED_ALGORITHMS


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


class AccessTokenSettings(BaseSettings):
    """How machines' OAuth2 access tokens are checked (``HENVIS_ACCESS_TOKEN_*``), shared by
    every API; each API's own audience is its service's ``ACCESS_TOKEN_AUDIENCE``.
    Lists are comma-separated.  Unset issuer: no access tokens, static tokens only."""

    model_config = SettingsConfigDict(env_prefix="HENVIS_ACCESS_TOKEN_", extra="ignore")

    issuer: str | None = Field(
        default=None,
        pattern=r"^https?://",
        description="The identity provider's issuer URL (its /.well-known/openid-configuration names the JWKS).",
    )
    jwks_url: str | None = Field(
        default=None,
        pattern=r"^https?://",
        description="The issuer's JWKS address; unset: found by discovery (Entra ID v1 tokens need it set).",
    )
    algorithms: str = Field(
        default=",".join(DEFAULT_ALGORITHMS),
        description="Allowed signature algorithms (asymmetric only; none and HS* are refused at start).",
    )
    leeway_seconds: int = Field(default=30, ge=0, le=300, description="Clock skew allowed on exp and nbf.")
    henvis_audiences: str = Field(
        default="henvis-consent-api,henvis-centre-api,henvis-stats-api",
        description="Audiences of all henvis APIs: a token for another one is a 403, any other audience a 401.",
    )
    roles_claim: str = Field(
        default="henvis_roles",
        description="Claim with the roles: a list, a space-separated string (scope) or a dotted path.",
    )
    role_map: dict[str, str] = Field(
        default_factory=dict,
        description=(
            'JSON {"provider value": "henvis role"}, e.g. Entra app roles ({"Henvis.Police": "police",'
            ' "Henvis.Centre.Herning": "centre:herning"}); henvis role names map to themselves.'
        ),
    )
    centre_claim: str = Field(default="henvis_centre", description="Claim with a centre system's centre slug.")
    client_claims: str = Field(
        default="client_id,azp,appid", description="Claims naming the client in the log; the first present counts."
    )
    jwks_min_refresh_seconds: float = Field(
        default=60.0, ge=1, description="Least time between key fetches caused by tokens naming an unknown key."
    )

    @field_validator("algorithms")
    @classmethod
    def _asymmetric_only(cls, value: str) -> str:
        refused = [alg for alg in _split(value) if alg not in SUPPORTED_ALGORITHMS]
        if refused or not _split(value):
            raise ValueError(f"only asymmetric signature algorithms {sorted(SUPPORTED_ALGORITHMS)}; refused {refused}")
        return value

    def algorithm_list(self) -> list[str]:
        return _split(self.algorithms)

    def henvis_audience_list(self) -> list[str]:
        return _split(self.henvis_audiences)

    def client_claim_list(self) -> list[str]:
        return _split(self.client_claims)


def _split(value: str) -> list[str]:
    return [part.strip() for part in value.split(",") if part.strip()]


def sqlite_in_run_dir(name: str):
    """A ``default_factory`` for a database URL: the SQLite file ``name`` in the run folder."""
    return lambda data: f"sqlite:///{Path(data['run_dir']) / name}"


class ServiceSettings(BaseSettings):
    """Base of every service's settings model."""

    model_config = SettingsConfigDict(env_prefix="HENVIS_", extra="ignore")

    log_level: str = _shared("log_level", default="INFO")
    run_dir: Path = _shared(
        "run_dir", default=Path(".run"), description="Local state of a single-host setup: the default SQLite files."
    )
    registry_path: Path | None = _shared(
        "registry_path", default=None, description="Centre registry file; the packaged one when unset."
    )
    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    api_clients_file: Path | None = _shared(
        "api_clients_file", default=None, description="YAML/JSON list of API clients (name, role, token_sha256)."
    )
    api_clients: str | None = _shared("api_clients", default=None, description="The same list as inline JSON.")
    api_static_tokens: bool | None = _shared(
        "api_static_tokens",
        default=None,
        description=(
            "Accept the static tokens of the client list. Unset: only when no access-token issuer is configured;"
            " true beside an issuer keeps them as an explicit fallback."
        ),
    )
    access_tokens: AccessTokenSettings = Field(default_factory=AccessTokenSettings)
    access_token_audience: str | None = Field(
        default=None, description="This API's audience: an access token must name it in aud."
    )


class StreamWorkerSettings(ServiceSettings):
    """Fields every stream worker (router, stats) has, under its own service prefix."""

    app_id: str = Field(
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,100}$",
        description="Consumer group id; the real group is <topic_prefix><app_id>.",
    )
    instance_id: str | None = Field(
        default_factory=socket.gethostname,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,100}$",
        description=(
            "Static group membership (Kafka group.instance.id), default the host name (in Kubernetes the "
            "pod name): a restarted worker takes its partitions back at once, without a rebalance. Two "
            "workers of one group on one host need their own ids. Empty: dynamic membership."
        ),
    )
    session_timeout_seconds: float = Field(
        default=30.0,
        ge=6,
        description="Kafka group session timeout: how soon the partitions of a worker that died for good move on.",
    )
    batch_max_records: int = Field(
        default=2000, ge=1, description="Most input records in one batch (one transaction per partition)."
    )
    batch_linger_ms: int = Field(
        default=0,
        ge=0,
        le=10_000,
        description="How long a batch that has records may wait for more (0: take what is there).",
    )
    retry_max_backoff_seconds: float = Field(default=30.0, gt=0, description="Ceiling of the retry backoff.")
    metrics_port: int = Field(default=0, ge=0, le=65535, description="/metrics port; 0 = off.")

    @field_validator("instance_id", mode="before")
    @classmethod
    def _empty_is_dynamic(cls, value: str | None) -> str | None:
        return value.strip() or None if isinstance(value, str) else value

    @property
    def group_id(self) -> str:
        return f"{self.kafka.topic_prefix}{self.app_id}"
