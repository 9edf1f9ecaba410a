"""The ``database_url`` fixture gives each test a working database of its own, on both engines."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

# Names of the PostgreSQL databases handed to the tests of this module so far.
_SEEN_POSTGRES_DATABASES: set[str] = set()


def _engine(url: str) -> sa.Engine:
    return sa.create_engine(url, poolclass=sa.pool.NullPool)


def test_database_url_is_a_working_database(database_url: str, request) -> None:
    engine = _engine(database_url)
    try:
        expected = request.node.callspec.params["database_url"]
        assert engine.dialect.name == expected
        metadata = sa.MetaData()
        probe = sa.Table(
            "fixture_probe",
            metadata,
            sa.Column("id", sa.Integer, primary_key=True),
            sa.Column("label", sa.String(50), nullable=False),
        )
        metadata.create_all(engine)
        with engine.begin() as conn:
            conn.execute(probe.insert(), [{"id": 1, "label": "første"}, {"id": 2, "label": "second"}])
        with engine.connect() as conn:
            rows = conn.execute(sa.select(probe.c.id, probe.c.label).order_by(probe.c.id)).all()
        assert [tuple(r) for r in rows] == [(1, "første"), (2, "second")]
    finally:
        engine.dispose()


def test_database_url_starts_empty(database_url: str) -> None:
    """Runs after the test above: its table must not be visible here (a fresh database each time)."""
    engine = _engine(database_url)
    try:
        assert sa.inspect(engine).get_table_names() == []
    finally:
        engine.dispose()


def test_postgresql_databases_are_unique_and_dropped(database_url: str, request) -> None:
    """Each PostgreSQL case gets a new uniquely named database; earlier ones are gone."""
    engine = _engine(database_url)
    try:
        if engine.dialect.name != "postgresql":
            assert engine.url.database.endswith("test.db")
            return
        with engine.connect() as conn:
            name = conn.execute(sa.text("SELECT current_database()")).scalar_one()
    finally:
        engine.dispose()
    assert name.startswith("henvis_test_")
    assert name not in _SEEN_POSTGRES_DATABASES
    admin = _engine(request.getfixturevalue("postgres_admin_url"))
    try:
        with admin.connect() as conn:
            existing = set(conn.execute(sa.text("SELECT datname FROM pg_database")).scalars())
    finally:
        admin.dispose()
    assert name in existing
    assert not (_SEEN_POSTGRES_DATABASES & existing), "a database of an earlier test was not dropped"


@pytest.fixture(autouse=True)
def _remember_postgres_database(database_url: str):
    """After each test, note its PostgreSQL database (database_url drops it right after)."""
    yield
    url = sa.engine.make_url(database_url)
    if url.get_backend_name() == "postgresql":
        _SEEN_POSTGRES_DATABASES.add(url.database)
