"""The router's one settings model (``HENVIS_ROUTER_*`` plus the shared ``HENVIS_*``)."""

from __future__ import annotations

import base64
import binascii

from pydantic import Field, field_validator
from pydantic_settings import SettingsConfigDict

from henvis.settings import StreamWorkerSettings

SEVEN_DAYS = 7 * 24 * 60 * 60


class RouterSettings(StreamWorkerSettings):
    model_config = SettingsConfigDict(env_prefix="HENVIS_ROUTER_", extra="ignore")

    app_id: str = Field(
        default="henvis-router",
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,100}$",
        description="Consumer group id, and the stem of the transactional ids and the state changelog.",
    )
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
    def changelog_topic(self) -> str:
        """The compacted topic holding the router's case states (partitioned like its input)."""
        return f"{self.group_id}-cases-changelog"
