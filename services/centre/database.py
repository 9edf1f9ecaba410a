"""The centre's SQL engine and the conversions every store module shares.

Store functions take the time ``now`` as an argument (default: the wall clock) so tests and
the pilot replay control the clock.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from henvis.db import aware, is_sqlite, make_engine, utcnow

__all__ = ["aware", "make_centre_engine", "ping", "utcnow"]


def make_centre_engine(url: str) -> Engine:
    """The shared engine, plus: SQLite transactions take the write lock when they begin.

    The worker and the web app write the same SQLite file; a deferred transaction that
    reads, then writes after the other process wrote, fails at once with "database is
    locked" instead of waiting. ``BEGIN IMMEDIATE`` makes it wait (busy_timeout) instead.
    """
    engine = make_engine(url)
    if is_sqlite(engine):
        sa.event.listen(engine, "connect", _manual_transactions)
        sa.event.listen(engine, "begin", _begin_immediate)
    return engine


def _manual_transactions(dbapi_connection, _record) -> None:
    dbapi_connection.isolation_level = None


def _begin_immediate(conn) -> None:
    conn.exec_driver_sql("BEGIN IMMEDIATE")


def ping(engine: Engine) -> bool:
    """True when the database answers (the readiness probe); raises when it does not."""
    with engine.connect() as conn:
        conn.execute(sa.text("SELECT 1"))
    return True
