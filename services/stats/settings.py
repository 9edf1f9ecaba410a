"""Configuration of the statistics service (worker and researcher API), from ``HENVIS_STATS_*``."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from henvis.settings import StreamWorkerSettings, sqlite_in_run_dir


class StatsSettings(StreamWorkerSettings):
    model_config = SettingsConfigDict(env_prefix="HENVIS_STATS_", extra="ignore")

    database_url: str = Field(default_factory=sqlite_in_run_dir("stats.db"))
    access_token_audience: str | None = Field(
        default="henvis-stats-api", description="This API's audience: an access token must name it in aud."
    )
    app_id: str = Field(
        default="henvis-stats",
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,100}$",
        description="The worker's consumer group; the topic prefix is added in front.",
    )
    suppression_threshold: int = Field(
        default=5,
        ge=2,
        le=100,
        description="Cells of 1..threshold-1 persons are suppressed (Statistics Denmark's floor is 3).",
    )
    rate_gauge_interval_seconds: float = Field(
        default=30.0, gt=0, description="How often the worker refreshes the rate gauges."
    )
    secure_cookies: bool = Field(
        default=False, description="Secure flag on the page's session cookie (set behind HTTPS)."
    )
