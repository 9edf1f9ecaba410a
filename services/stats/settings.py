"""Configuration of the statistics service (worker and researcher API), from ``HENVIS_STATS_*``."""

from __future__ import annotations

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import SettingsConfigDict

from henvis.oidc import OidcLoginSettings
from henvis.settings import StreamWorkerSettings, sqlite_in_run_dir


class StatsSettings(StreamWorkerSettings, OidcLoginSettings):
    """The statistics service's settings; the page's sign-in (``HENVIS_STATS_LOGIN``, ``_OIDC_*``) is henvis.oidc's.

    ``login=password`` (the default) is the researcher's token pasted into the page.
    """

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
    session_secret: SecretStr | None = Field(
        default=None, description="Signs the page's session cookie after an OIDC sign-in; required with login=oidc."
    )
    session_max_age_seconds: int = Field(default=8 * 3600, ge=60, description="A session ends this long after login.")
    session_idle_seconds: int = Field(
        default=30 * 60, ge=60, description="A session not used for this long ends (checked by the server)."
    )
    page_url: str | None = Field(
        default=None,
        pattern=r"^https?://",
        description="The page's public address (the OIDC callback is <page_url>/login/callback); default the request's.",
    )

    @model_validator(mode="after")
    def _oidc_needs_a_session_secret(self):
        if self.login == "oidc" and self.session_secret is None:
            raise ValueError("HENVIS_STATS_LOGIN=oidc needs HENVIS_STATS_SESSION_SECRET")
        return self
