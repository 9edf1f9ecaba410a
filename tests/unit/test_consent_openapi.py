"""The checked-in OpenAPI document is the one the service serves and prints."""

from __future__ import annotations

import json
import subprocess
import sys

from henvis.services.consent.cli import openapi_json
from tests.consent_support import REPO, consent_app

CHECKED_IN = REPO / "docs" / "consent-openapi.json"
REGENERATE = "run `henvis consent openapi --output docs/consent-openapi.json` and commit it"


def test_checked_in_openapi_document_is_up_to_date() -> None:
    assert CHECKED_IN.read_text(encoding="utf-8") == openapi_json(), f"docs/consent-openapi.json is stale: {REGENERATE}"


def test_served_openapi_matches_the_checked_in_document(tmp_path) -> None:
    from fastapi.testclient import TestClient

    client = TestClient(consent_app(f"sqlite:///{tmp_path / 'c.db'}"))
    assert client.get("/openapi.json").json() == json.loads(CHECKED_IN.read_text(encoding="utf-8"))


def test_openapi_command_prints_the_document() -> None:
    printed = subprocess.run(
        [sys.executable, "-m", "henvis.cli", "consent", "openapi"], capture_output=True, text=True, check=True, cwd=REPO
    ).stdout
    document = json.loads(printed)
    assert set(document["paths"]) >= {"/v1/decisions", "/v1/withdrawals", "/healthz", "/readyz"}
    post = document["paths"]["/v1/decisions"]["post"]
    assert {"200", "202", "401", "403", "409", "413", "415", "422", "503"} <= set(post["responses"])
