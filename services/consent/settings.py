"""The consent service's one settings model (``HENVIS_CONSENT_*`` plus the shared ``HENVIS_*``)."""

from __future__ import annotations

from pydantic import Field, SecretStr
from pydantic_settings import SettingsConfigDict
from sqlalchemy import make_url

from henvis.settings import ServiceSettings, sqlite_in_run_dir
from henvis.shredding import CasePseudonyms, KeyEncryptionKeys, decode_secret


class KeysNotConfigured(RuntimeError):
    """A key the command needs is not set (the message names the variable, never a value)."""


class ConsentSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="HENVIS_CONSENT_", extra="ignore")

    database_url: str = Field(
        default_factory=sqlite_in_run_dir("consent.db"),
        description="SQLAlchemy URL of the consent database (events + outbox).",
    )
    access_token_audience: str | None = Field(
        default="henvis-consent-api", description="This API's audience: an access token must name it in aud."
    )
    database_pool_size: int = Field(
        # SQLAlchemy's default (5) is below the API's usual concurrency: every request past it
        # opened a new database connection and closed it again (on PostgreSQL a connect and
        # authentication per decision; bench/README.md, issue 18 profile).
        default=16,
        ge=1,
        le=200,
        description="Database connections the API keeps open (per process).",
    )
    database_max_overflow: int = Field(
        default=8,
        ge=0,
        le=200,
        description="Extra connections opened above the pool size under a burst, closed after use.",
    )
    max_body_bytes: int = Field(default=64 * 1024, ge=1024, description="Larger request bodies get 413.")
    metrics_port: int = Field(default=0, ge=0, le=65535, description="Relay's /metrics port; 0 = off.")
    relay_id: str | None = Field(
        default=None, description="Lease owner name of this relay replica; hostname:pid when unset."
    )
    relay_batch_size: int = Field(default=500, ge=1, le=10_000, description="Outbox rows leased at a time.")
    relay_poll_interval_seconds: float = Field(
        # A commit wakes the relay (PostgreSQL LISTEN/NOTIFY, inotify on a SQLite file); this
        # poll only catches what a lost wake-up would miss, so it can be slow and cheap.
        default=1.0,
        gt=0,
        le=60,
        description="Longest pause when the outbox is empty: the safety net behind the wake-up on commit.",
    )
    relay_wakeup: bool = Field(
        default=True,
        description=(
            "Wake the relay on each commit (PostgreSQL LISTEN, inotify on a SQLite file); false = poll only,"
            " e.g. behind a connection pooler in transaction mode, where LISTEN does not work."
        ),
    )
    relay_lease_seconds: float = Field(
        default=60.0,
        ge=30,
        le=3600,
        description="How long a leased batch belongs to one relay; a crashed relay's rows wait this long.",
    )
    relay_max_backoff_seconds: float = Field(default=10.0, gt=0, le=300, description="Cap of the retry backoff.")
    sent_retention_hours: float = Field(
        default=24.0, ge=0, description="Published outbox rows (which hold the payload) are deleted after this."
    )
    case_ref_retention_days: float = Field(
        default=365.0,
        gt=0,
        description=(
            "Days after receipt after which the case number (case_ref, personal data) is erased from the"
            " idempotency records. It is kept only so a withdrawal naming just referral_id can be published"
            " keyed by its case; after this, such a withdrawal is refused and must name case_ref."
        ),
    )
    case_pseudonym_key: SecretStr | None = Field(
        default=None,
        description=(
            "Base64 secret of at least 32 random bytes: the HMAC key of case pseudonyms (the key of"
            " consent.decisions.v2 and of the router's state). Required to serve. Never change it while"
            " cases are open: a later withdrawal would no longer find its consent."
        ),
    )
    key_encryption_keys: SecretStr | None = Field(
        default=None,
        description=(
            "The key store's key-encryption keys, 'id:base64[,id:base64...]', 32 bytes each"
            " (`henvis consent keys generate`). Required to serve and to rotate."
        ),
    )
    key_encryption_key_id: str | None = Field(
        default=None, description="Which key-encryption key wraps new data keys; the first listed when unset."
    )
    data_key_max_age_days: float = Field(
        default=365.0,
        gt=0,
        description=(
            "Backstop of the key store: a data key no withdrawal and no holder's retention destroyed is"
            " destroyed this many days after it was made."
        ),
    )

    def key_encryption(self) -> KeyEncryptionKeys:
        """The configured KEKs; :class:`KeysNotConfigured` or ValueError when they cannot work."""
        if self.key_encryption_keys is None:
            raise KeysNotConfigured(
                "HENVIS_CONSENT_KEY_ENCRYPTION_KEYS is required (henvis consent keys generate makes one)"
            )
        return KeyEncryptionKeys.parse(self.key_encryption_keys.get_secret_value(), self.key_encryption_key_id)

    def case_pseudonyms(self) -> CasePseudonyms:
        """The case pseudonym function; :class:`KeysNotConfigured` or ValueError."""
        if self.case_pseudonym_key is None:
            raise KeysNotConfigured("HENVIS_CONSENT_CASE_PSEUDONYM_KEY is required (henvis consent keys generate)")
        return CasePseudonyms(
            decode_secret(self.case_pseudonym_key.get_secret_value(), "HENVIS_CONSENT_CASE_PSEUDONYM_KEY")
        )

    def engine_options(self) -> dict[str, int]:
        """The pool of the API's engine (an in-memory SQLite database has one connection, no pool)."""
        url = make_url(self.database_url)
        if url.get_backend_name() == "sqlite" and url.database in (None, "", ":memory:"):
            return {}
        return {"pool_size": self.database_pool_size, "max_overflow": self.database_max_overflow}
