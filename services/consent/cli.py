"""``henvis consent serve|relay|migrate|openapi|submit``.

Each command imports what it runs when it runs, so the relay never loads FastAPI and the
API never loads kafka-python; nothing imports this module back, so no cycle hides here.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
from pathlib import Path

from henvis.db import migrate
from henvis.logging import configure_logging
from henvis.services.consent.settings import ConsentSettings

SERVICE = "consent"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="henvis consent",
        description="Police-facing consent API, its outbox relay to Kafka, and batch submission. "
        "Configuration comes from HENVIS_CONSENT_* and HENVIS_* environment variables.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the HTTP API (migrates the database first)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8001)
    sub.add_parser("relay", help="publish the outbox to consent.decisions.v1 until SIGTERM")
    sub.add_parser("migrate", help="bring the consent database to the latest schema")
    openapi = sub.add_parser("openapi", help="print the OpenAPI document (JSON)")
    openapi.add_argument("--output", type=Path, help="write to this file instead of stdout")
    submit = sub.add_parser("submit", help="validate, then post a JSON-lines file of events")
    submit.add_argument("file", type=Path, help="one consent.given/declined/withdrawn event per line")
    submit.add_argument("--url", default=os.environ.get("HENVIS_CONSENT_URL", "http://127.0.0.1:8001"))
    submit.add_argument(
        "--token-file", type=Path, help="file holding the police bearer token (else $HENVIS_CONSENT_TOKEN)"
    )
    submit.add_argument("--check", action="store_true", help="only validate the file; send nothing")
    return parser


def openapi_json() -> str:
    """The consent API's OpenAPI document as the checked-in JSON text."""
    from henvis.services.consent.api import openapi_document

    return json.dumps(openapi_document(), indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str]) -> int:
    """Run one ``henvis consent`` command; returns its exit code."""
    args = _parser().parse_args(argv)
    commands = {"openapi": _openapi, "submit": _submit, "migrate": _migrate, "serve": _serve, "relay": _relay}
    return commands[args.command](args)


def _openapi(args: argparse.Namespace) -> int:
    text = openapi_json()
    if args.output:
        args.output.write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    return 0


def _migrated_settings() -> ConsentSettings:
    """The settings, once logging is configured and the database is at the latest schema."""
    settings = ConsentSettings()
    configure_logging(SERVICE, settings.log_level)
    migrate(settings.database_url, SERVICE)
    return settings


def _migrate(_args: argparse.Namespace) -> int:
    _migrated_settings()
    print("consent database is at the latest schema")
    return 0


def _serve(args: argparse.Namespace) -> int:
    from henvis.http import serve
    from henvis.services.consent.api import create_consent_app

    return serve(create_consent_app(_migrated_settings()), args.host, args.port)


def _relay(_args: argparse.Namespace) -> int:
    from henvis.services.consent.relay import run_relay

    settings = _migrated_settings()
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    run_relay(settings, stop)
    return 0


def _submit(args: argparse.Namespace) -> int:
    from henvis.registry import load_registry
    from henvis.services.consent.submit import submit_file

    token = os.environ.get("HENVIS_CONSENT_TOKEN", "").strip()
    if args.token_file:
        try:
            token = args.token_file.read_text(encoding="utf-8").strip()
        except OSError as exc:
            print(f"cannot read the token file: {type(exc).__name__}", file=sys.stderr)
            return 2
    if not token and not args.check:
        print("a token is needed: --token-file FILE or HENVIS_CONSENT_TOKEN", file=sys.stderr)
        return 2
    settings = ConsentSettings()
    return submit_file(args.file, args.url, token, load_registry(settings.registry_path), check_only=args.check)
