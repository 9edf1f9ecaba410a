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
from henvis.services.consent.settings import ConsentSettings, KeysNotConfigured

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
    sub.add_parser("relay", help="publish the outbox to consent.decisions.v2 until SIGTERM")
    sub.add_parser("migrate", help="bring the consent database to the latest schema")
    openapi = sub.add_parser("openapi", help="print the OpenAPI document (JSON)")
    openapi.add_argument("--output", type=Path, help="write to this file instead of stdout")
    submit = sub.add_parser("submit", help="validate, then post a JSON-lines file of events")
    submit.add_argument("file", type=Path, help="one consent.given/declined/withdrawn event per line")
    submit.add_argument("--url", default=os.environ.get("HENVIS_CONSENT_URL", "http://127.0.0.1:8001"))
    submit.add_argument(
        "--token-file", type=Path, help="file holding the police bearer token (else $HENVIS_CONSENT_TOKEN)"
    )
    submit.add_argument(
        "--client-id",
        default=os.environ.get("HENVIS_CONSENT_CLIENT_ID"),
        help="instead of a token: the system's OAuth2 client at $HENVIS_ACCESS_TOKEN_ISSUER (client credentials)",
    )
    submit.add_argument(
        "--client-secret-file", type=Path, help="file holding the client's secret (else $HENVIS_CONSENT_CLIENT_SECRET)"
    )
    submit.add_argument("--scope", default=None, help="scope to ask for (Entra ID: api://<consent app>/.default)")
    submit.add_argument("--check", action="store_true", help="only validate the file; send nothing")
    keys = sub.add_parser("keys", help="the key store: make keys, rotate the key-encryption key, show counts")
    keys_sub = keys.add_subparsers(dest="keys_command", required=True)
    generate = keys_sub.add_parser("generate", help="print a new key-encryption key and case pseudonym key")
    generate.add_argument("--kek-id", default=None, help="id of the new key-encryption key (default: today's date)")
    keys_sub.add_parser(
        "rotate", help="re-wrap every data key under the current key-encryption key (the service keeps running)"
    )
    keys_sub.add_parser("status", help="live data keys by key-encryption key, destroyed ones by reason (JSON)")
    return parser


def openapi_json() -> str:
    """The consent API's OpenAPI document as the checked-in JSON text."""
    from henvis.services.consent.api import openapi_document

    return json.dumps(openapi_document(), indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str]) -> int:
    """Run one ``henvis consent`` command; returns its exit code."""
    args = _parser().parse_args(argv)
    commands = {
        "openapi": _openapi,
        "submit": _submit,
        "migrate": _migrate,
        "serve": _serve,
        "relay": _relay,
        "keys": _keys,
    }
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

    settings = _migrated_settings()
    try:
        app = create_consent_app(settings)
    except (KeysNotConfigured, ValueError) as exc:
        print(f"henvis consent serve: {exc}", file=sys.stderr)
        return 2
    return serve(app, args.host, args.port)


def _relay(_args: argparse.Namespace) -> int:
    from henvis.services.consent.relay import run_relay

    settings = _migrated_settings()
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    run_relay(settings, stop)
    return 0


def _keys(args: argparse.Namespace) -> int:
    if args.keys_command == "generate":
        return _generate_keys(args.kek_id)
    from henvis.db import make_engine
    from henvis.services.consent import store_keys

    settings = _migrated_settings()
    engine = make_engine(settings.database_url)
    if args.keys_command == "status":
        print(json.dumps(store_keys.status(engine), indent=2))
        return 0
    try:
        keks = settings.key_encryption()
    except (KeysNotConfigured, ValueError) as exc:
        print(f"henvis consent keys rotate: {exc}", file=sys.stderr)
        return 2
    rotation = store_keys.rotate(engine, keks)
    print(
        f"re-wrapped {rotation.rewrapped} data key(s) under {keks.current!r};"
        f" {rotation.changed_meanwhile} destroyed meanwhile and left so"
    )
    if not rotation.complete:
        not_done = ", ".join(f"{count} under {kek_id!r}" for kek_id, count in sorted(rotation.not_rewrapped.items()))
        print(f"NOT re-wrapped: {not_done} (that key-encryption key is not configured, or does not open them)")
        return 1
    print("every live data key is under the current key-encryption key: the others may be removed")
    return 0


def _generate_keys(kek_id: str | None) -> int:
    from datetime import date

    from henvis.shredding import new_secret

    print(f"HENVIS_CONSENT_KEY_ENCRYPTION_KEYS={kek_id or date.today().isoformat()}:{new_secret()}")
    print(f"HENVIS_CONSENT_CASE_PSEUDONYM_KEY={new_secret()}")
    print("# secrets: put them in the consent service's Secret, never in a ConfigMap or a log", file=sys.stderr)
    return 0


def _submit(args: argparse.Namespace) -> int:
    from henvis.registry import load_registry
    from henvis.services.consent.submit import submit_file

    settings = ConsentSettings()
    if args.client_id:
        return _submit_as_client(args, settings)
    token = os.environ.get("HENVIS_CONSENT_TOKEN", "").strip()
    if args.token_file:
        try:
            token = args.token_file.read_text(encoding="utf-8").strip()
        except OSError as exc:
            print(f"cannot read the token file: {type(exc).__name__}", file=sys.stderr)
            return 2
    if not token and not args.check:
        print("a token is needed: --token-file FILE or HENVIS_CONSENT_TOKEN (or --client-id)", file=sys.stderr)
        return 2
    return submit_file(args.file, args.url, token, load_registry(settings.registry_path), check_only=args.check)


def _submit_as_client(args: argparse.Namespace, settings: ConsentSettings) -> int:
    """``submit`` with access tokens the system gets itself, renewed as they expire."""
    from henvis.client_credentials import ClientCredentials, ProviderAuth
    from henvis.registry import load_registry
    from henvis.services.consent.submit import submit_file

    secret = os.environ.get("HENVIS_CONSENT_CLIENT_SECRET", "").strip()
    if args.client_secret_file:
        try:
            secret = args.client_secret_file.read_text(encoding="utf-8").strip()
        except OSError as exc:
            print(f"cannot read the client secret file: {type(exc).__name__}", file=sys.stderr)
            return 2
    issuer = settings.access_tokens.issuer
    if not secret or not issuer:
        print(
            "--client-id needs HENVIS_ACCESS_TOKEN_ISSUER and a secret (--client-secret-file or"
            " HENVIS_CONSENT_CLIENT_SECRET)",
            file=sys.stderr,
        )
        return 2
    auth = ProviderAuth(ClientCredentials(issuer, args.client_id, secret, scope=args.scope))
    return submit_file(args.file, args.url, auth, load_registry(settings.registry_path), check_only=args.check)
