"""Caseworker identity: argon2 password hashes, signed session cookies, CSRF tokens.

The session cookie holds only the user name, the centre slug, a CSRF token, the time it
was issued and last used, and (after an OpenID Connect login) the provider's ID token for
the sign-out, signed with HMAC-SHA256 (``HENVIS_CENTRE_SESSION_SECRET``) — nothing personal
about a citizen ever goes into it. The server refuses a session older than its maximum age
or unused for longer than the idle timeout, whatever the cookie's own expiry says.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass
from typing import TypeGuard

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

SESSION_COOKIE = "henvis_centre_session"

_hasher = PasswordHasher()
# Verified against when the user name is unknown, so both cases take the same time.
_DUMMY_HASH = _hasher.hash(secrets.token_urlsafe(16))


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    """True if ``password`` matches; with no hash (unknown user) it takes as long and is False."""
    try:
        return _hasher.verify(password_hash or _DUMMY_HASH, password) and password_hash is not None
    except (VerificationError, InvalidHashError):
        return False


def needs_rehash(password_hash: str) -> bool:
    return _hasher.check_needs_rehash(password_hash)


@dataclass(frozen=True)
class Session:
    csrf: str
    issued: float
    username: str | None = None
    centre: str | None = None
    #: the provider's ID token of an OpenID Connect login: the sign-out's id_token_hint
    id_token: str | None = None
    #: ``auditor`` for an auditor signed in at the provider (no centre, only the access log)
    role: str | None = None

    @property
    def logged_in(self) -> bool:
        return self.username is not None and self.centre is not None

    @property
    def signed_in(self) -> bool:
        """A caseworker or an auditor: someone who can sign out."""
        return self.logged_in or (self.username is not None and self.role == "auditor")

    @classmethod
    def anonymous(cls) -> Session:
        return cls(csrf=secrets.token_urlsafe(24), issued=time.time())

    @classmethod
    def for_user(cls, username: str, centre: str, id_token: str | None = None) -> Session:
        # A fresh CSRF token at login: a token seen before login is worthless after it.
        return cls(
            csrf=secrets.token_urlsafe(24), issued=time.time(), username=username, centre=centre, id_token=id_token
        )


def for_auditor(username: str, id_token: str | None) -> Session:
    """An auditor's session: the access log, no centre and so no inbox."""
    return Session(
        csrf=secrets.token_urlsafe(24), issued=time.time(), username=username, id_token=id_token, role="auditor"
    )


def auditor(session: Session | None) -> str | None:
    """The auditor signed in with ``session``, or None."""
    return session.username if session and session.role == "auditor" and session.username else None


@dataclass(frozen=True)
class Caseworker:
    """A logged-in session, with its user name and centre known to be set."""

    session: Session
    username: str
    centre: str


def caseworker(session: Session | None) -> Caseworker | None:
    """Who is logged in with ``session``; None without a session or with an anonymous one."""
    if session is None or session.username is None or session.centre is None:
        return None
    return Caseworker(session, session.username, session.centre)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class SessionSigner:
    def __init__(self, secret: bytes, max_age_seconds: int, idle_seconds: int | None = None):
        self._key = hashlib.sha256(b"henvis-centre-session|" + secret).digest()
        self.max_age_seconds = max_age_seconds
        self.idle_seconds = idle_seconds or max_age_seconds

    def dumps(self, session: Session) -> str:
        """The signed cookie value; it records now as the session's last use (the idle clock)."""
        data = {"c": session.csrf, "i": session.issued, "s": time.time(), "u": session.username, "k": session.centre}
        if session.id_token:
            data["t"] = session.id_token
        if session.role:
            data["r"] = session.role
        body = _b64(json.dumps(data).encode())
        return f"{body}.{self._sign(body)}"

    def loads(self, cookie: str | None) -> Session | None:
        """The session in a cookie, or None if missing, tampered with, expired or idle too long."""
        if not cookie or "." not in cookie:
            return None
        body, signature = cookie.rsplit(".", 1)
        if not hmac.compare_digest(signature, self._sign(body)):
            return None
        try:
            data = json.loads(_unb64(body))
            session = Session(
                csrf=data["c"],
                issued=float(data["i"]),
                username=data.get("u"),
                centre=data.get("k"),
                id_token=data.get("t"),
                role=data.get("r"),
            )
            seen = float(data.get("s", session.issued))
        except (ValueError, KeyError, TypeError):
            return None
        now = time.time()
        if now - session.issued > self.max_age_seconds or now - seen > self.idle_seconds:
            return None
        return session

    def _sign(self, body: str) -> str:
        return _b64(hmac.new(self._key, body.encode(), hashlib.sha256).digest())


def csrf_valid(session: Session | None, submitted: str | None) -> TypeGuard[Session]:
    """True when ``submitted`` is the session's CSRF token (so there is a session)."""
    return bool(session and submitted and hmac.compare_digest(session.csrf, submitted))
