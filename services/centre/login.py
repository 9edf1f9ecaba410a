"""Logging a caseworker in: the password, the rate limit, and the centres this deployment serves."""

from __future__ import annotations

from enum import StrEnum

import sqlalchemy as sa
import structlog

from henvis.services.centre import auth
from henvis.services.centre.state import CentreState
from henvis.services.centre.store_access_log import log_access
from henvis.services.centre.store_users import (
    add_login_failure,
    clear_login_failures,
    get_user,
    login_subject,
    recent_login_failures,
    set_password_hash,
)

# Named as before this module existed, so the log lines (their "logger" field) stay the same.
log = structlog.get_logger("henvis.centre.web")


class LoginVerdict(StrEnum):
    OK = "ok"
    WRONG = "wrong"
    RATE_LIMITED = "rate_limited"
    CENTRE_NOT_SERVED = "centre_not_served"


def authenticate(
    state: CentreState, username: str, password: str, client_ip: str
) -> tuple[LoginVerdict, sa.Row | None]:
    """(verdict, user); the user only when the verdict is ``ok``. Blocking: argon2 and the database."""
    subject = login_subject(username, client_ip)
    settings = state.settings
    if recent_login_failures(state.engine, subject, settings.login_window_seconds) >= settings.login_max_failures:
        log.warning("login_rate_limited")
        return LoginVerdict.RATE_LIMITED, None
    user = get_user(state.engine, username) if username else None
    if user is None or not auth.verify_password(user.password_hash, password):
        if user is None:
            auth.verify_password(None, password)  # same time whether or not the user exists
        add_login_failure(state.engine, subject)
        log.info("login_failed")
        return LoginVerdict.WRONG, None
    if user.centre not in state.centres:
        return LoginVerdict.CENTRE_NOT_SERVED, None
    clear_login_failures(state.engine, subject)
    if auth.needs_rehash(user.password_hash):
        set_password_hash(state.engine, user.username, auth.hash_password(password))
    log_access(
        state.engine, actor=user.username, actor_kind="user", centre=user.centre, referral_id=None, action="login"
    )
    return LoginVerdict.OK, user
