"""``henvis centre worker|serve|migrate|purge|digest|add-user``.

Each command imports the heavy parts only it needs (kafka-python, FastAPI, argon2 with its
import-time hash), so the worker does not pay for the web app and the other way round.
"""

from __future__ import annotations

import argparse
import getpass
import re
import sys

from henvis.db import migrate
from henvis.logging import configure_logging
from henvis.registry import load_registry
from henvis.services.centre.database import make_centre_engine
from henvis.services.centre.retention import purge
from henvis.services.centre.settings import CentreSettings
from henvis.services.centre.store_users import add_user

USERNAME_PATTERN = r"[A-Za-z0-9][A-Za-z0-9._@-]{1,63}"
MIN_PASSWORD_LENGTH = 12


def main(argv: list[str]) -> int:
    """Run one ``henvis centre`` command; returns the exit code."""
    args = _parser().parse_args(argv)
    settings = CentreSettings()
    configure_logging("centre", settings.log_level)
    if args.command == "worker":
        return run_worker(settings)
    if args.command == "serve":
        return serve(settings, args.host, args.port)
    migrate(settings.database_url, "centre")
    if args.command == "migrate":
        return 0
    if args.command == "purge":
        return purge_now(settings)
    if args.command == "digest":
        return send_digest_now(settings)
    if args.command == "add-user":
        return add_user_from_prompt(settings, args.centre, args.username, args.password_stdin)
    return 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="henvis centre", description="Centre inbox: worker, caseworker web app, users."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("worker", help="consume the centres' topics into the inbox; relay outcomes to Kafka")
    serve_parser = sub.add_parser("serve", help="caseworker web app and API")
    serve_parser.add_argument("--host", default="127.0.0.1")
    serve_parser.add_argument("--port", type=int, default=8002)
    sub.add_parser("migrate", help="bring the inbox database to the latest schema")
    sub.add_parser("purge", help="erase contact details of referrals closed/withdrawn longer than the retention")
    sub.add_parser(
        "digest", help="e-mail each centre's shared mailbox its counts of new, due-soon and overdue referrals"
    )
    add_user_parser = sub.add_parser("add-user", help="create a caseworker account (or reset its password)")
    add_user_parser.add_argument("--centre", required=True, help="centre slug from the registry")
    add_user_parser.add_argument("--username", required=True)
    add_user_parser.add_argument(
        "--password-stdin", action="store_true", help="read the password from stdin instead of a prompt"
    )
    return parser


def run_worker(settings: CentreSettings) -> int:
    """The inbox worker, until SIGTERM/SIGINT."""
    from henvis.services.centre.worker import run_worker as run

    return run(settings)


def serve(settings: CentreSettings, host: str, port: int) -> int:
    """The web app and API, until SIGTERM/SIGINT; a loopback host may use a generated session secret."""
    from henvis.http import serve as serve_app
    from henvis.services.centre.api import build_app

    return serve_app(build_app(settings, local_only=host in ("127.0.0.1", "localhost", "::1")), host, port)


def purge_now(settings: CentreSettings) -> int:
    """Destroy the keys and erase the copies the retention period says are due, once."""
    try:
        keys = settings.data_keys(settings.centre_slugs(load_registry(settings.registry_path)))
    except RuntimeError as exc:  # the key store is not configured: say which setting, no traceback
        print(f"henvis centre purge: {exc}", file=sys.stderr)
        return 2
    count = purge(make_centre_engine(settings.database_url), keys, settings.retention_days)
    print(f"erased contact details of {count} referral(s)")
    return 0


def send_digest_now(settings: CentreSettings) -> int:
    """The daily digest, once; exit code 1 when a centre's delivery failed."""
    from henvis.services.centre.digest import send_digests

    try:
        report = send_digests(
            settings, load_registry(settings.registry_path), make_centre_engine(settings.database_url)
        )
    except RuntimeError as exc:  # a setting is missing: say which, no traceback
        print(f"henvis centre digest: {exc}", file=sys.stderr)
        return 2
    print(
        f"digest sent to {len(report.sent)} centre(s); no mailbox in the registry: "
        f"{', '.join(report.no_mailbox) or 'none'}; failed: {', '.join(report.failed) or 'none'}"
    )
    return 1 if report.failed else 0


def add_user_from_prompt(settings: CentreSettings, centre: str, username: str, password_stdin: bool) -> int:
    """Create or reset a caseworker's account, the password read from a prompt (or stdin)."""
    from henvis.services.centre.auth import hash_password

    registry = load_registry(settings.registry_path)
    if registry.by_slug(centre) is None:
        return _refuse(f"unknown centre {centre!r}; known: {', '.join(registry.slugs)}")
    if not re.fullmatch(USERNAME_PATTERN, username):
        return _refuse("--username must be 2-64 letters, digits or . _ @ -")
    password = _read_password(password_stdin)
    if password is None:
        return _refuse("the passwords differ")
    if len(password) < MIN_PASSWORD_LENGTH:
        return _refuse(f"the password must be at least {MIN_PASSWORD_LENGTH} characters")
    created = add_user(make_centre_engine(settings.database_url), username, centre, hash_password(password))
    print(f"{'created' if created else 'updated'} user {username} for centre {centre}")
    return 0


def _read_password(from_stdin: bool) -> str | None:
    """The password; None when the prompt's two entries differ."""
    if from_stdin:
        return sys.stdin.readline().rstrip("\n")
    password = getpass.getpass("Adgangskode: ")
    return password if getpass.getpass("Gentag adgangskode: ") == password else None


def _refuse(message: str) -> int:
    print(f"henvis centre add-user: {message}", file=sys.stderr)
    return 2
