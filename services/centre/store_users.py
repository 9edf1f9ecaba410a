"""SQL adapter of the caseworkers' accounts and of the failed logins the rate limit counts."""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from henvis.services.centre.database import utcnow
from henvis.services.centre.models import login_failures, users


def add_user(engine: Engine, username: str, centre: str, password_hash: str, now: datetime | None = None) -> bool:
    """Create or replace a caseworker's account; True when it is new."""
    with engine.begin() as conn:
        exists = conn.execute(sa.select(users.c.username).where(users.c.username == username)).first()
        if exists:
            conn.execute(
                users.update()
                .where(users.c.username == username)
                .values(centre=centre, password_hash=password_hash, active=True)
            )
            return False
        conn.execute(
            users.insert().values(
                username=username, centre=centre, password_hash=password_hash, created_at=now or utcnow(), active=True
            )
        )
        return True


def get_user(engine: Engine, username: str) -> sa.Row | None:
    """The active account ``username`` (username, centre, password_hash ...), or None."""
    with engine.connect() as conn:
        return conn.execute(sa.select(users).where(users.c.username == username, users.c.active.is_(True))).first()


def set_password_hash(engine: Engine, username: str, password_hash: str) -> None:
    """Replace an account's password hash (a rehash with today's parameters)."""
    with engine.begin() as conn:
        conn.execute(users.update().where(users.c.username == username).values(password_hash=password_hash))


def login_subject(username: str, client_ip: str) -> str:
    """Rate-limit key; a digest so the table holds neither user names nor addresses in clear."""
    return hashlib.sha256(f"{username.lower()}|{client_ip}".encode()).hexdigest()


def recent_login_failures(engine: Engine, subject: str, window_seconds: int, now: datetime | None = None) -> int:
    """How often ``subject`` failed to log in during the last ``window_seconds``."""
    since = (now or utcnow()) - timedelta(seconds=window_seconds)
    with engine.connect() as conn:
        return conn.execute(
            sa.select(sa.func.count())
            .select_from(login_failures)
            .where(login_failures.c.subject == subject, login_failures.c.at >= since)
        ).scalar_one()


def add_login_failure(engine: Engine, subject: str, now: datetime | None = None) -> None:
    """Count one failed login of ``subject``."""
    now = now or utcnow()
    with engine.begin() as conn:
        conn.execute(login_failures.insert().values(subject=subject, at=now))
        # Old failures no longer count against anyone; keep the table small.
        conn.execute(login_failures.delete().where(login_failures.c.at < now - timedelta(days=1)))


def clear_login_failures(engine: Engine, subject: str) -> None:
    """Forget ``subject``'s failures (after a successful login)."""
    with engine.begin() as conn:
        conn.execute(login_failures.delete().where(login_failures.c.subject == subject))
