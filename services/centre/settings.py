"""Configuration of the centre inbox (worker and web app), from ``HENVIS_CENTRE_*``."""

from __future__ import annotations

import json
import os
import secrets
from datetime import time
from pathlib import Path
from typing import Literal

import yaml
from pydantic import Field, SecretStr, model_validator
from pydantic_settings import SettingsConfigDict

from henvis.client_credentials import ClientCredentials
from henvis.oidc import OidcLoginSettings
from henvis.registry import Registry
from henvis.services.centre.domain_alerts import WorkingHours
from henvis.services.centre.key_store import KeyStoreClient
from henvis.settings import ServiceSettings, sqlite_in_run_dir


class CentreSettings(ServiceSettings, OidcLoginSettings):
    """The centre's settings; the login fields (``HENVIS_CENTRE_LOGIN``, ``HENVIS_CENTRE_OIDC_*``) are henvis.oidc's."""

    model_config = SettingsConfigDict(env_prefix="HENVIS_CENTRE_", extra="ignore")

    database_url: str = Field(default_factory=sqlite_in_run_dir("centre.db"))
    access_token_audience: str | None = Field(
        default="henvis-centre-api", description="This API's audience: an access token must name it in aud."
    )
    centres: str | None = Field(
        default=None,
        description="Comma-separated centre slugs this deployment consumes; all in the registry when unset.",
    )
    group_id: str = Field(default="henvis-centre", description="Consumer group; the topic prefix is added in front.")
    retention_days: int = Field(
        default=90, ge=0, description="Days after close/withdrawal before contact details are erased."
    )
    purge_interval_seconds: float = Field(default=3600, gt=0)
    relay_interval_seconds: float = Field(
        default=0.2, gt=0, description="How often the outbox relay looks for new rows."
    )
    session_secret: SecretStr | None = Field(
        default=None, description="Signs caseworker session cookies; required outside the demo (HENVIS_CENTRE_DEMO=1)."
    )
    demo: bool = Field(default=False, description="Allow a generated session secret stored in the run dir.")
    secure_cookies: bool | None = Field(
        default=None, description="Secure flag on cookies; unset = on unless the host is localhost/127.0.0.1."
    )
    session_max_age_seconds: int = Field(default=8 * 3600, ge=60, description="A session ends this long after login.")
    session_idle_seconds: int = Field(
        default=30 * 60, ge=60, description="A session not used for this long ends (checked by the server)."
    )
    login_max_failures: int = Field(default=5, ge=1)
    login_window_seconds: int = Field(default=15 * 60, ge=1)
    metrics_port: int = 0
    key_store_url: str | None = Field(
        default=None,
        description="Base URL of the consent service, whose key store releases each referral's data key. Required.",
    )
    key_store_tokens: SecretStr | None = Field(
        default=None,
        description='Each served centre\'s own key-store credential, JSON {"<slug>": "<token>"} (role centre:<slug>).',
    )
    key_store_tokens_file: Path | None = Field(
        default=None, description="The same JSON (or YAML) in a file, e.g. a mounted Secret."
    )
    key_store_clients: SecretStr | None = Field(
        default=None,
        description=(
            "With an identity provider (HENVIS_ACCESS_TOKEN_ISSUER): each served centre's OAuth2 client for the"
            ' key store, JSON {"<slug>": {"client_id": "...", "client_secret": "...", "scope": "...",'
            ' "token_url": "..."}} (scope and token_url optional; Entra ID: scope api://<consent app>/.default).'
            " Takes the place of that centre's static token."
        ),
    )
    key_store_clients_file: Path | None = Field(
        default=None, description="The same JSON (or YAML) in a file, e.g. a mounted Secret."
    )
    consumer_session_timeout_ms: int = Field(
        default=45_000,
        ge=6_000,
        description="How long the group waits for a silent (killed) worker before reassigning its partitions.",
    )

    due_soon_working_hours: float = Field(
        default=8,
        gt=0,
        description="An open referral counts as due soon when no more than this many working hours are left.",
    )
    working_day_opens: time = Field(default=time(8), description="Start of the centres' working day (Danish time).")
    working_day_closes: time = Field(default=time(16), description="End of the centres' working day (Danish time).")

    inbox_url: str | None = Field(
        default=None,
        pattern=r"^https?://",
        description="Address of the caseworkers' inbox as the centres open it; the digest e-mail links to it.",
    )
    smtp_host: str | None = Field(default=None, description="SMTP server for the daily digest; unset = no digest.")
    smtp_port: int = Field(default=587, ge=1, le=65535)
    smtp_security: Literal["starttls", "tls", "none"] = Field(
        default="starttls", description="starttls (port 587), tls (implicit, port 465) or none (a local relay only)."
    )
    smtp_username: str | None = Field(default=None, description="SMTP login; unset = no authentication.")
    smtp_password: SecretStr | None = None
    smtp_from: str | None = Field(default=None, description="Sender address of the digest, e.g. henvis@politi.dk.")
    smtp_timeout_seconds: float = Field(default=30, gt=0)

    @model_validator(mode="after")
    def _working_day_is_a_day(self):
        if self.working_day_closes <= self.working_day_opens:
            raise ValueError("HENVIS_CENTRE_WORKING_DAY_CLOSES must be after HENVIS_CENTRE_WORKING_DAY_OPENS")
        return self

    def working_hours(self) -> WorkingHours:
        """The working day and due-soon window the deadline gauges and the digest count with."""
        return WorkingHours(self.working_day_opens, self.working_day_closes, self.due_soon_working_hours)

    def data_keys(self, centres: list[str]) -> KeyStoreClient:
        """The key store, with a credential for each of ``centres``; RuntimeError when one is missing."""
        tokens: dict[str, str | ClientCredentials] = {}
        tokens.update(_secret_mapping(self.key_store_tokens_file, self.key_store_tokens))
        clients = _secret_mapping(self.key_store_clients_file, self.key_store_clients)
        if clients and not self.access_tokens.issuer:
            raise RuntimeError("HENVIS_CENTRE_KEY_STORE_CLIENTS needs HENVIS_ACCESS_TOKEN_ISSUER (the token endpoint)")
        for centre, client in clients.items():
            tokens[centre] = ClientCredentials(
                str(self.access_tokens.issuer),
                client["client_id"],
                client["client_secret"],
                scope=client.get("scope"),
                token_url=client.get("token_url"),
            )
        missing = [centre for centre in centres if not tokens.get(centre)]
        if not self.key_store_url or missing:
            raise RuntimeError(
                "HENVIS_CENTRE_KEY_STORE_URL and a key-store credential for every served centre"
                " (HENVIS_CENTRE_KEY_STORE_TOKENS[_FILE] or HENVIS_CENTRE_KEY_STORE_CLIENTS[_FILE]) are required;"
                f" missing for: {', '.join(missing) or '-'}"
            )
        return KeyStoreClient(self.key_store_url, {centre: tokens[centre] for centre in centres})

    def centre_slugs(self, registry: Registry) -> list[str]:
        if not self.centres:
            return registry.slugs
        slugs = [slug.strip() for slug in self.centres.split(",") if slug.strip()]
        unknown = [slug for slug in slugs if registry.by_slug(slug) is None]
        if unknown:
            raise ValueError(f"HENVIS_CENTRE_CENTRES names centres that are not in the registry: {', '.join(unknown)}")
        return slugs

    def consumer_group(self) -> str:
        return f"{self.kafka.topic_prefix}{self.group_id}"

    def resolved_session_secret(self, local_only: bool = False) -> bytes:
        """The cookie-signing key.

        Without ``HENVIS_CENTRE_SESSION_SECRET``, a random key kept in the run dir (so a
        restart keeps caseworkers logged in) is allowed only for the demo or a web app that
        listens on loopback (``local_only``); a deployment reachable from outside must set it.
        """
        if self.session_secret is not None:
            return self.session_secret.get_secret_value().encode()
        if not (self.demo or local_only):
            raise RuntimeError(
                "HENVIS_CENTRE_SESSION_SECRET is required when serving beyond localhost (or HENVIS_CENTRE_DEMO=1)"
            )
        path = self.run_dir / "centre-session-secret"
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists():
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:
                pass  # another process of the demo made it a moment ago
            else:
                with os.fdopen(fd, "w") as handle:
                    handle.write(secrets.token_urlsafe(48))
        return path.read_text().strip().encode()

    def cookies_secure(self, host: str) -> bool:
        if self.secure_cookies is not None:
            return self.secure_cookies
        return host not in ("localhost", "127.0.0.1", "::1")


def _secret_mapping(file: Path | None, inline: SecretStr | None) -> dict:
    """A JSON/YAML object from a file and inline JSON (the inline entries win)."""
    mapping: dict = {}
    if file is not None:
        mapping.update(yaml.safe_load(file.read_text(encoding="utf-8")) or {})
    if inline is not None:
        mapping.update(json.loads(inline.get_secret_value()))
    return mapping
