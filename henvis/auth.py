"""API credentials: every HTTP client has its own bearer token and one role (DESIGN §6.4).

Tokens are never stored: the client list holds their SHA-256 (tokens are 256-bit random,
so a fast hash is enough) and is read from ``HENVIS_API_CLIENTS_FILE`` (YAML or JSON, in
production a mounted Secret) or ``HENVIS_API_CLIENTS`` (JSON).  Roles:

* ``police`` — post consent decisions and withdrawals;
* ``centre:<slug>`` — one centre's machine client (its case system);
* ``researcher`` — read aggregate statistics;
* ``auditor`` — read the centres' access log;
* ``operator`` — operational endpoints.

``henvis token new --name NAME --role ROLE`` prints a fresh token once and the line to add
to the client list.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import re
import secrets
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

ROLE_PATTERN = r"^(police|researcher|auditor|operator|manual-handling|centre:[a-z][a-z0-9-]{1,39})$"


class ApiClient(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
    role: str = Field(pattern=ROLE_PATTERN)
    token_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")

    @property
    def centre(self) -> str | None:
        """The centre slug of a ``centre:<slug>`` client."""
        return self.role.split(":", 1)[1] if self.role.startswith("centre:") else None


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> str:
    return "hv_" + secrets.token_urlsafe(32)


class ClientRegistry:
    """Looks up the client behind a bearer token in constant time per client."""

    def __init__(self, clients: list[ApiClient]):
        self._clients = list(clients)

    def authenticate(self, token: str | None) -> ApiClient | None:
        if not token:
            return None
        digest = hash_token(token)
        found = None
        for client in self._clients:
            if hmac.compare_digest(client.token_sha256, digest):
                found = client
        return found

    @classmethod
    def load(cls, file: Path | None = None, inline_json: str | None = None) -> ClientRegistry:
        entries: list = []
        if file:
            entries += yaml.safe_load(Path(file).read_text(encoding="utf-8")) or []
        if inline_json:
            entries += json.loads(inline_json)
        return cls(TypeAdapter(list[ApiClient]).validate_python(entries))

    @classmethod
    def from_settings(cls, settings) -> ClientRegistry:
        return cls.load(settings.api_clients_file, settings.api_clients)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="henvis token", description="Make API credentials.")
    sub = parser.add_subparsers(dest="command", required=True)
    new = sub.add_parser("new", help="print a new token and its client-list entry")
    new.add_argument("--name", required=True)
    new.add_argument("--role", required=True, help="police | researcher | auditor | operator | centre:<slug>")
    args = parser.parse_args(argv)
    if not re.match(ROLE_PATTERN, args.role):
        parser.error(f"--role must match {ROLE_PATTERN}")
    token = new_token()
    client = ApiClient(name=args.name, role=args.role, token_sha256=hash_token(token))
    print(f"token (give it to the client, it is not stored): {token}")
    print("client-list entry (HENVIS_API_CLIENTS_FILE):")
    print(yaml.safe_dump([client.model_dump()], sort_keys=False).rstrip())
    return 0
