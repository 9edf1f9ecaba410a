"""The router's one settings model (``HENVIS_ROUTER_*`` plus the shared ``HENVIS_*``)."""

from __future__ import annotations

import base64
import binascii
import os
from pathlib import Path

from pydantic import Field, field_validator
from pydantic_settings import SettingsConfigDict

from henvis.settings import ServiceSettings

SEVEN_DAYS = 7 * 24 * 60 * 60


def _default_data_dir() -> Path:
    return Path(os.environ.get("HENVIS_RUN_DIR") or ".run") / "router"


class RouterSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="HENVIS_ROUTER_", extra="ignore")

    app_id: str = Field(
        default="henvis-router",
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,100}$",
        description="Consumer group / faust app id; the real id is <topic_prefix><app_id>.",
    )
    data_dir: Path = Field(default_factory=_default_data_dir, description="faust's data directory.")
    manual_public_key: str | None = Field(
        default=None,
        description=(
            "Base64 Curve25519 public key (PyNaCl) of the manual-handling role. Set: the source event of a "
            "manual-handling case travels sealed for that role. Unset: it is dropped, only ids and reason travel."
        ),
    )
    withdrawal_wait_seconds: float = Field(
        default=SEVEN_DAYS, gt=0, description="How long a withdrawal waits for its consent before manual handling."
    )
    withdrawal_check_seconds: float | None = Field(
        default=None, gt=0, description="How often pending withdrawals are checked; default min(wait/4, 60 s)."
    )
    retry_max_backoff_seconds: float = Field(default=30.0, gt=0, description="Ceiling of the publish retry backoff.")
    session_timeout_seconds: float = Field(
        default=30.0,
        ge=6,
        description="Kafka group session timeout: how soon the partitions of a killed worker move to another.",
    )
    instance_id: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,100}$",
        description=(
            "Static group membership (Kafka group.instance.id), e.g. the StatefulSet pod name: a restarted "
            "worker takes its partitions back without a rebalance. Unset: dynamic membership."
        ),
    )
    metrics_port: int = Field(default=0, ge=0, le=65535, description="/metrics port; 0 = off.")

    @field_validator("manual_public_key")
    @classmethod
    def _is_public_key(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        try:
            raw = base64.b64decode(value.strip(), validate=True)
        except (binascii.Error, ValueError):
            raise ValueError("must be base64 (a PyNaCl public key)") from None
        if len(raw) != 32:
            raise ValueError("must be a 32-byte Curve25519 public key in base64")
        return value.strip()

    @property
    def check_interval_seconds(self) -> float:
        if self.withdrawal_check_seconds:
            return self.withdrawal_check_seconds
        return max(0.2, min(self.withdrawal_wait_seconds / 4, 60.0))

    @property
    def faust_app_id(self) -> str:
        return f"{self.kafka.topic_prefix}{self.app_id}"
