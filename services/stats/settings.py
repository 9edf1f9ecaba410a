"""Configuration of the statistics service (worker and researcher API), from ``HENVIS_STATS_*``."""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from henvis.settings import ServiceSettings


def run_dir() -> Path:
    return Path(os.environ.get("HENVIS_RUN_DIR") or ".run")


def _default_database_url() -> str:
    return f"sqlite:///{run_dir() / 'stats.db'}"


def _default_data_dir() -> Path:
    return run_dir() / "stats-faust"


class StatsSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="HENVIS_STATS_", extra="ignore")

    database_url: str = Field(default_factory=_default_database_url)
    app_id: str = Field(default="henvis-stats", description="faust app id / consumer group; the topic prefix is added in front.")
    data_dir: Path = Field(default_factory=_default_data_dir, description="faust's local data directory.")
    suppression_threshold: int = Field(
        default=5,
        ge=2,
        le=100,
        description="Cells of 1..threshold-1 persons are suppressed (Statistics Denmark's floor is 3).",
    )
    metrics_port: int = Field(default=0, ge=0, le=65535, description="Worker /metrics port; 0 = off.")
    rate_gauge_interval_seconds: float = Field(default=30.0, gt=0, description="How often the worker refreshes the rate gauges.")
    secure_cookies: bool = Field(default=False, description="Secure flag on the page's session cookie (set behind HTTPS).")

    def faust_app_id(self) -> str:
        return f"{self.kafka.topic_prefix}{self.app_id}"
