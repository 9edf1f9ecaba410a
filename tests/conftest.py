"""Shared pytest fixtures.

Databases
    ``database_url``        one fresh, empty database per test, once on SQLite and once on
                            PostgreSQL (ids ``[sqlite]`` / ``[postgresql]``); the PostgreSQL
                            one is created from ``postgres_admin_url`` and dropped afterwards.
    ``postgres_admin_url``  (session) ``HENVIS_TEST_POSTGRES_URL``; skipped when unset,
                            failed when unset and ``CI=true``. ``make test`` sets it from
                            ``tools/postgres.sh start``.

Kafka
    ``kafka_bootstrap``     (session) ``HENVIS_TEST_KAFKA_BOOTSTRAP`` or a broker started with
                            ``henvis_dev.broker.start`` for the session.
    ``topic_prefix``        unique ``t<8 hex>.`` per test, so tests never share topics.
    ``kafka_settings``      ``KafkaSettings`` for that broker and prefix; also exported as
                            ``HENVIS_KAFKA_BOOTSTRAP_SERVERS`` / ``HENVIS_KAFKA_TOPIC_PREFIX``.

Keycloak
    ``keycloak``            (session) the ``henvis`` realm's Keycloak: ``HENVIS_TEST_KEYCLOAK_URL``
                            (a running one, e.g. ``henvis keycloak start``) or one started with
                            ``henvis_dev.keycloak.start`` for the session. Skipped without a
                            Java 21+, failed without one when ``CI=true`` or
                            ``HENVIS_REQUIRE_KEYCLOAK=1``.

Markers are applied automatically: ``kafka`` on every test that uses ``kafka_bootstrap``
(directly or through another fixture), ``keycloak`` on every test that uses ``keycloak``,
``postgres`` on the ``[postgresql]`` case of
``database_url`` and on tests using ``postgres_admin_url``. So ``pytest -m "not kafka and
not postgres"`` is the fast unit run.

Helpers (``free_port``, ``wait_until``, ``await_until``) live in ``tests/helpers.py``.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import free_port

POSTGRES_NOT_CONFIGURED = "PostgreSQL not configured: set HENVIS_TEST_POSTGRES_URL (make test does)"
DATABASE_ENGINES = ["sqlite", "postgresql"]


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() == "true"


# --------------------------------------------------------------------------- databases


def _psycopg_url(url: str):
    """``url`` as a SQLAlchemy URL that uses psycopg 3 (plain ``postgresql://`` would pick psycopg2)."""
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed


@pytest.fixture(scope="session")
def postgres_admin_url() -> str:
    """Admin URL of the test PostgreSQL server (may create and drop databases)."""
    url = os.environ.get("HENVIS_TEST_POSTGRES_URL", "").strip()
    if not url:
        if _in_ci():
            pytest.fail(f"{POSTGRES_NOT_CONFIGURED}; CI=true, so this is a failure, not a skip", pytrace=False)
        pytest.skip(POSTGRES_NOT_CONFIGURED)
    return _psycopg_url(url).render_as_string(hide_password=False)


@pytest.fixture(scope="session")
def _postgres_admin_engine(postgres_admin_url: str):
    from sqlalchemy import create_engine, text
    from sqlalchemy.pool import NullPool

    engine = create_engine(postgres_admin_url, isolation_level="AUTOCOMMIT", poolclass=NullPool)
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception as exc:  # noqa: BLE001 - turn any driver error into one clear message
        engine.dispose()
        pytest.fail(f"cannot connect to HENVIS_TEST_POSTGRES_URL ({postgres_admin_url}): {exc}", pytrace=False)
    yield engine
    engine.dispose()


@pytest.fixture(params=DATABASE_ENGINES, ids=DATABASE_ENGINES)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """URL of a fresh, empty database for this test, on each engine in turn."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'test.db'}"
        return

    from sqlalchemy import text

    admin_engine = request.getfixturevalue("_postgres_admin_engine")
    name = f"henvis_test_{uuid.uuid4().hex[:16]}"
    with admin_engine.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield admin_engine.url.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin_engine.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


# --------------------------------------------------------------------------- kafka


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``host:port`` of a Kafka broker for the whole session."""
    external = os.environ.get("HENVIS_TEST_KAFKA_BOOTSTRAP", "").strip()
    if external:
        yield external
        return

    from henvis_dev import broker  # lazily: only Kafka tests need it

    run_dir = tmp_path_factory.mktemp("kafka-broker")
    try:
        handle = broker.start(run_dir=run_dir, port=free_port())
    except BaseException:
        with contextlib.suppress(Exception):  # the start failure is the error worth reporting
            broker.stop(run_dir)
        raise
    try:
        yield handle.bootstrap
    finally:
        broker.stop(run_dir)


@pytest.fixture
def topic_prefix() -> str:
    """A prefix unique to this test, e.g. ``t1a2b3c4d.``; topic names get it via ``henvis.kafka``."""
    return f"t{uuid.uuid4().hex[:8]}."


@pytest.fixture
def kafka_settings(kafka_bootstrap: str, topic_prefix: str, monkeypatch: pytest.MonkeyPatch):
    """Kafka settings for the session broker with this test's topic prefix (3 partitions)."""
    from henvis.settings import KafkaSettings

    monkeypatch.setenv("HENVIS_KAFKA_BOOTSTRAP_SERVERS", kafka_bootstrap)
    monkeypatch.setenv("HENVIS_KAFKA_TOPIC_PREFIX", topic_prefix)
    monkeypatch.setenv("HENVIS_KAFKA_PARTITIONS", "3")
    return KafkaSettings(bootstrap_servers=kafka_bootstrap, topic_prefix=topic_prefix, partitions=3)


# --------------------------------------------------------------------------- keycloak


def _keycloak_required() -> bool:
    return _in_ci() or os.environ.get("HENVIS_REQUIRE_KEYCLOAK", "").strip() == "1"


@pytest.fixture(scope="session")
def keycloak(tmp_path_factory: pytest.TempPathFactory):
    """The local Keycloak with the ``henvis`` realm, for the whole session (a ``KeycloakHandle``)."""
    from henvis_dev import keycloak as kc  # lazily: only identity-provider tests need it

    external = os.environ.get("HENVIS_TEST_KEYCLOAK_URL", "").strip().rstrip("/")
    if external:
        yield kc.KeycloakHandle(external, int(external.rsplit(":", 1)[1]), 0, Path())
        return
    try:
        kc.find_java()
    except kc.KeycloakError as exc:
        if _keycloak_required():
            pytest.fail(f"{exc}; CI=true or HENVIS_REQUIRE_KEYCLOAK=1, so this is a failure, not a skip", pytrace=False)
        pytest.skip(str(exc))
    run_dir = tmp_path_factory.mktemp("keycloak")
    try:
        handle = kc.start(run_dir, port=free_port())
    except BaseException:
        with contextlib.suppress(Exception):  # the start failure is the error worth reporting
            kc.stop(run_dir)
        raise
    try:
        yield handle
    finally:
        kc.stop(run_dir)


# --------------------------------------------------------------------------- markers


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        fixtures = getattr(item, "fixturenames", ())
        if "kafka_bootstrap" in fixtures:
            item.add_marker(pytest.mark.kafka)
        if "keycloak" in fixtures:
            item.add_marker(pytest.mark.keycloak)
        callspec = getattr(item, "callspec", None)
        uses_postgres = "postgres_admin_url" in fixtures or "_postgres_admin_engine" in fixtures
        if callspec is not None and callspec.params.get("database_url") == "postgresql":
            uses_postgres = True
        if uses_postgres:
            item.add_marker(pytest.mark.postgres)
