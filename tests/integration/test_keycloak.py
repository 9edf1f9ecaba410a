"""The local Keycloak of the tests and the demo serves the henvis realm as the guides describe it.

One session-wide Keycloak (tests/conftest.py ``keycloak``); each test asks it what a client of
henvis would ask: the discovery document, and a client-credentials token whose signature checks
out against the realm's published keys and whose claims carry the roles and audience henvis maps.
"""

from __future__ import annotations

import httpx
from joserfc import jwt
from joserfc.jwk import KeySet

from henvis_dev.keycloak_realm import secret_of


def _discovery(keycloak) -> dict:
    response = httpx.get(f"{keycloak.issuer}/.well-known/openid-configuration", timeout=30)
    assert response.status_code == 200
    return response.json()


def _client_token(keycloak, client_id: str) -> str:
    response = httpx.post(
        _discovery(keycloak)["token_endpoint"],
        data={"grant_type": "client_credentials", "client_id": client_id, "client_secret": secret_of(client_id)},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    return response.json()["access_token"]


def _verified_claims(keycloak, token: str) -> dict:
    keys = KeySet.import_key_set(httpx.get(_discovery(keycloak)["jwks_uri"], timeout=30).json())
    return dict(jwt.decode(token, keys, algorithms=["RS256"]).claims)


def test_the_realm_offers_code_flow_with_pkce_and_provider_logout(keycloak):
    discovery = _discovery(keycloak)
    assert discovery["issuer"] == keycloak.issuer
    assert "S256" in discovery["code_challenge_methods_supported"]
    assert discovery["end_session_endpoint"].startswith(keycloak.issuer)
    assert "code" in discovery["response_types_supported"]


def test_police_client_gets_a_signed_token_for_the_consent_api(keycloak):
    claims = _verified_claims(keycloak, _client_token(keycloak, "police-case-system"))
    assert claims["iss"] == keycloak.issuer
    assert claims["aud"] == "henvis-consent-api"
    assert claims["henvis_roles"] == ["police"]
    assert "henvis_centre" not in claims


def test_centre_system_token_names_its_centre_and_the_centre_api(keycloak):
    claims = _verified_claims(keycloak, _client_token(keycloak, "centre-viborg-system"))
    assert claims["aud"] == "henvis-centre-api"
    assert claims["henvis_roles"] == ["centre"]
    assert claims["henvis_centre"] == "viborg"


def test_a_wrong_client_secret_gets_no_token(keycloak):
    response = httpx.post(
        _discovery(keycloak)["token_endpoint"],
        data={"grant_type": "client_credentials", "client_id": "police-case-system", "client_secret": "wrong"},
        timeout=30,
    )
    assert response.status_code == 401
    assert "access_token" not in response.json()
