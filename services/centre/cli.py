"""``henvis centre worker|serve|migrate|purge|add-user``."""

from __future__ import annotations

import argparse
import getpass
import re
import sys

from henvis.logging import configure_logging


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="henvis centre", description="Centre inbox: worker, caseworker web app, users.")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("worker", help="consume the centres' topics into the inbox; relay outcomes to Kafka")
    serve = sub.add_parser("serve", help="caseworker web app and API")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8002)
    sub.add_parser("migrate", help="bring the inbox database to the latest schema")
    sub.add_parser("purge", help="erase contact details of referrals closed/withdrawn longer than the retention")
    add_user = sub.add_parser("add-user", help="create a caseworker account (or reset its password)")
    add_user.add_argument("--centre", required=True, help="centre slug from the registry")
    add_user.add_argument("--username", required=True)
    add_user.add_argument("--password-stdin", action="store_true", help="read the password from stdin instead of a prompt")
    args = parser.parse_args(argv)

    from henvis.services.centre.settings import CentreSettings

    settings = CentreSettings()
    configure_logging("centre", settings.log_level)

    if args.command == "worker":
        from henvis.services.centre.worker import run_worker

        return run_worker(settings)
    if args.command == "serve":
        from henvis.http import serve
        from henvis.services.centre.api import build_app

        return serve(build_app(settings, local_only=args.host in ("127.0.0.1", "localhost", "::1")), args.host, args.port)

    from henvis.db import migrate

    migrate(settings.database_url, "centre")
    if args.command == "migrate":
        return 0

    from henvis.services.centre import store

    engine = store.make_centre_engine(settings.database_url)
    if args.command == "purge":
        count = store.purge(engine, settings.retention_days)
        print(f"erased contact details of {count} referral(s)")
        return 0
    if args.command == "add-user":
        from henvis.registry import load_registry
        from henvis.services.centre.auth import hash_password

        registry = load_registry(settings.registry_path)
        if registry.by_slug(args.centre) is None:
            print(f"henvis centre add-user: unknown centre {args.centre!r}; known: {', '.join(registry.slugs)}", file=sys.stderr)
            return 2
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._@-]{1,63}", args.username):
            print("henvis centre add-user: --username must be 2-64 letters, digits or . _ @ -", file=sys.stderr)
            return 2
        if args.password_stdin:
            password = sys.stdin.readline().rstrip("\n")
        else:
            password = getpass.getpass("Adgangskode: ")
            if getpass.getpass("Gentag adgangskode: ") != password:
                print("henvis centre add-user: the passwords differ", file=sys.stderr)
                return 2
        if len(password) < 12:
            print("henvis centre add-user: the password must be at least 12 characters", file=sys.stderr)
            return 2
        created = store.add_user(engine, args.username, args.centre, hash_password(password))
        print(f"{'created' if created else 'updated'} user {args.username} for centre {args.centre}")
        return 0
    return 2
