"""The router's one settings model (``HENVIS_ROUTER_*`` plus the shared ``HENVIS_*``)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from henvis.settings import StreamWorkerSettings
from henvis.stream.transactional import GROUP_COMMIT_SECONDS

SEVEN_DAYS = 7 * 24 * 60 * 60


class RouterSettings(StreamWorkerSettings):
    model_config = SettingsConfigDict(env_prefix="HENVIS_ROUTER_", extra="ignore")

    app_id: str = Field(
        default="henvis-router",
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,100}$",
        description="Consumer group id, and the stem of the transactional ids and the state changelog.",
    )
    withdrawal_wait_seconds: float = Field(
        default=SEVEN_DAYS, gt=0, description="How long a withdrawal waits for its consent before manual handling."
    )
    withdrawal_check_seconds: float | None = Field(
        default=None, gt=0, description="How often pending withdrawals are checked; default min(wait/4, 60 s)."
    )
    group_commit_seconds: float = Field(
        default=GROUP_COMMIT_SECONDS,
        gt=0,
        description=(
            "How often the consumer group's committed offset is brought up to the one kept in the "
            "changelog; it is a lagging copy for lag monitoring, read only by a changelog written "
            "before the offset moved into it."
        ),
    )

    @property
    def check_interval_seconds(self) -> float:
        if self.withdrawal_check_seconds:
            return self.withdrawal_check_seconds
        return max(0.2, min(self.withdrawal_wait_seconds / 4, 60.0))

    @property
    def changelog_topic(self) -> str:
        """The compacted topic holding the router's case states (partitioned like its input)."""
        return f"{self.group_id}-cases-changelog"
