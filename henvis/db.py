"""SQL: one way to make an engine and to migrate a service's database.

SQLite is the embedded default and PostgreSQL the production database; both must work.
Each service owns its database and its Alembic scripts in ``services/<name>/migrations``
(an ``env.py`` of two lines that calls :func:`run_migrations_online`).
"""

from __future__ import annotations

from dataclasses import fields
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Any, overload

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url


def utcnow() -> datetime:
    """The wall clock in UTC, as every store saves it (store functions take ``now`` so tests
    and replays control the clock; this is their default)."""
    return datetime.now(UTC)


@overload
def aware(moment: datetime) -> datetime: ...
@overload
def aware(moment: None) -> None: ...


def aware(moment: datetime | None) -> datetime | None:
    """SQLite hands back naive datetimes; everything is stored in UTC."""
    if moment is None:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def row_values(record: Any) -> dict[str, Any]:
    """A flat dataclass record's fields as a statement's parameters.

    ``dataclasses.asdict`` deep-copies every value (a datetime is rebuilt through ``copy``):
    on the consent API's accept path that was a measurable share of its CPU (issue 18)."""
    return {field.name: getattr(record, field.name) for field in fields(record)}


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    # WAL lets the API write while a relay reads; busy_timeout makes concurrent writers wait
    # instead of failing; foreign keys are off by default in SQLite.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def make_engine(url: str, **kwargs) -> Engine:
    """An engine for ``url``; SQLite files get their folder created and safe pragmas."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, **kwargs)
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    kwargs.setdefault("pool_pre_ping", True)
    return create_engine(url, **kwargs)


def is_sqlite(engine: Engine) -> bool:
    return engine.dialect.name == "sqlite"


def alembic_config(url: str, service: str) -> Config:
    """Alembic configuration for ``henvis.services.<service>.migrations``."""
    location = resources.files(f"henvis.services.{service}").joinpath("migrations")
    config = Config()
    config.set_main_option("script_location", str(location))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def migrate(url: str, service: str, revision: str = "head") -> None:
    """Bring the service's database to ``revision`` (idempotent; safe at every start)."""
    command.upgrade(alembic_config(url, service), revision)


def run_migrations_online() -> None:
    """The body of every service's Alembic ``env.py``."""
    from alembic import context

    url = context.config.get_main_option("sqlalchemy.url")
    if url is None:
        raise RuntimeError("alembic: no sqlalchemy.url (henvis.db.migrate sets it)")
    engine = make_engine(url)
    with engine.connect() as connection:
        context.configure(connection=connection, render_as_batch=is_sqlite(engine))
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()
