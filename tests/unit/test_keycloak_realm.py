"""The local Keycloak's realm file matches the registry and the login henvis asks for."""

from __future__ import annotations

import json

from henvis.registry import load_registry
from henvis_dev.keycloak_realm import REALM_FILE, WEB_CLIENT, realm_text


def _realm() -> dict:
    return json.loads(REALM_FILE.read_text(encoding="utf-8"))


def test_realm_file_is_generated_from_the_registry():
    assert REALM_FILE.read_text(encoding="utf-8") == realm_text(), "run `python -m henvis_dev.keycloak_realm`"


def test_every_centre_has_a_caseworker_in_its_group():
    users = {user["username"]: user for user in _realm()["users"]}
    for centre in load_registry().centres:
        caseworker = users[f"caseworker-{centre.slug}"]
        assert caseworker["groups"] == [f"/centres/{centre.slug}"]
        assert caseworker["realmRoles"] == ["caseworker"]


def test_web_client_is_confidential_with_pkce_s256_and_no_password_grant():
    client = next(c for c in _realm()["clients"] if c["clientId"] == WEB_CLIENT)
    assert client["publicClient"] is False
    assert client["attributes"]["pkce.code.challenge.method"] == "S256"
    assert client["directAccessGrantsEnabled"] is False
    assert client["implicitFlowEnabled"] is False
