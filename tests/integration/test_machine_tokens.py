"""Systems with OAuth2 access tokens from a real Keycloak (the realm of tools/keycloak).

The police case system and the centres' case systems are confidential clients of the
realm with service accounts: they get their tokens with the client-credentials grant, as
they would in production, and henvis checks them against the keys Keycloak publishes.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import subprocess
import time
import uuid

import httpx
import pytest
import structlog
from fastapi.testclient import TestClient
from joserfc import jwt
from joserfc.jwk import KeySet, RSAKey

from henvis.auth import ClientRegistry
from henvis.services.centre import store_intake
from henvis.services.centre.api import build_app
from henvis.services.consent.api import create_consent_app
from henvis.services.consent.settings import ConsentSettings
from henvis_dev.keycloak_realm import ROLELESS_CLIENT, secret_of
from tests import examples
from tests.centre_fakes import KEYS, centre_settings, referral_issued
from tests.consent_support import HENVIS, KEY_SETTINGS, REPO, migrated_engine
from tests.helpers import free_port, served

#: The realm's machine clients with their fixed demo secrets.
POLICE_CLIENT = ("police-case-system", secret_of("police-case-system"))
HERNING_CLIENT = ("centre-herning-system", secret_of("centre-herning-system"))
VIBORG_CLIENT = ("centre-viborg-system", secret_of("centre-viborg-system"))


def client_credentials_token(issuer: str, client: tuple[str, str]) -> str:
    """What a system does: ask the provider's token endpoint with its id and secret."""
    endpoint = f"{issuer}/protocol/openid-connect/token"
    answer = httpx.post(
        endpoint, data={"grant_type": "client_credentials", "client_id": client[0], "client_secret": client[1]}
    )
    assert answer.status_code == 200, answer.text
    return answer.json()["access_token"]


@pytest.fixture
def provider_env(keycloak, monkeypatch: pytest.MonkeyPatch) -> str:
    """The deployment's settings with Keycloak as the issuer (static tokens thereby off)."""
    monkeypatch.setenv("HENVIS_ACCESS_TOKEN_ISSUER", keycloak.issuer)
    return keycloak.issuer


@pytest.fixture
def consent_api(provider_env: str, tmp_path) -> TestClient:
    database_url = f"sqlite:///{tmp_path / 'consent.db'}"
    settings = ConsentSettings(database_url=database_url, **KEY_SETTINGS)
    app = create_consent_app(
        settings, engine=migrated_engine(database_url), clients=ClientRegistry.from_settings(settings)
    )
    with TestClient(app) as client:
        yield client
    app.state.engine.dispose()


@pytest.fixture
def centre_api(provider_env: str, tmp_path) -> TestClient:
    app = build_app(centre_settings(f"sqlite:///{tmp_path / 'centre.db'}", centres="herning,viborg"), keys=KEYS)
    with TestClient(app, base_url="http://localhost") as client:
        yield client
    app.state.centre.engine.dispose()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_the_police_client_posts_a_decision_with_its_token_which_the_centre_api_refuses(
    provider_env: str, consent_api: TestClient, centre_api: TestClient
):
    token = client_credentials_token(provider_env, POLICE_CLIENT)
    event = examples.consent_given()
    with structlog.testing.capture_logs() as logs:
        answer = consent_api.post("/v1/decisions", json=event, headers=bearer(token))
    assert answer.status_code == 202, answer.text
    assert [entry["client"] for entry in logs if entry["event"] == "http_request"] == ["police-case-system"]
    assert consent_api.post("/v1/decisions", json=event, headers=bearer(token)).status_code == 200

    assert centre_api.get("/v1/referrals", headers=bearer(token)).status_code == 403
    # and the other way round: a centre system's token is for the centre API only
    centre_token = client_credentials_token(provider_env, HERNING_CLIENT)
    assert (
        consent_api.post("/v1/decisions", json=examples.consent_given(), headers=bearer(centre_token)).status_code
        == 403
    )


def test_a_centre_system_reaches_its_own_centre_and_not_another(provider_env: str, centre_api: TestClient):
    engine = centre_api.app.state.centre.engine
    herning = referral_issued("herning")
    viborg = referral_issued("viborg", person_index=1)
    assert store_intake.ingest_issued(engine, herning, "herning") == "stored"
    assert store_intake.ingest_issued(engine, viborg, "viborg") == "stored"
    herning_token = client_credentials_token(provider_env, HERNING_CLIENT)
    viborg_token = client_credentials_token(provider_env, VIBORG_CLIENT)

    listed = centre_api.get("/v1/referrals", headers=bearer(herning_token)).json()["referrals"]
    assert [referral["referral_id"] for referral in listed] == [str(herning.referral_id)]
    assert centre_api.get(f"/v1/referrals/{viborg.referral_id}", headers=bearer(herning_token)).status_code == 404
    assert centre_api.get(f"/v1/referrals/{viborg.referral_id}", headers=bearer(viborg_token)).status_code == 200


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def test_forged_and_tampered_tokens_against_keycloaks_keys_are_401(provider_env: str, consent_api: TestClient):
    """Attacks that need only what anyone can see: a real token and Keycloak's published keys.

    Tampering with a real token's payload, re-signing it with HS256 under Keycloak's public
    key, dropping the signature (``alg: none``), and signing with a key Keycloak never
    published: each is a 401 with its reason logged and nothing of the token in the log.
    (Expired, not-yet-valid, wrong-issuer and missing-role tokens would need Keycloak's
    private key; tests/unit/test_access_tokens.py forges them with a key of its own behind a
    real JWKS endpoint.)
    """
    real = client_credentials_token(provider_env, POLICE_CLIENT)
    header, payload, signature = real.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    kid = json.loads(base64.urlsafe_b64decode(header + "=" * (-len(header) % 4)))["kid"]
    jwks_uri = httpx.get(f"{provider_env}/.well-known/openid-configuration").json()["jwks_uri"]
    public = KeySet.import_key_set({"keys": httpx.get(jwks_uri).json()["keys"]}).get_by_kid(kid)
    assert isinstance(public, RSAKey)
    tampered = dict(claims, azp="someone-else")
    hs_input = f"{b64(json.dumps({'alg': 'HS256', 'typ': 'JWT', 'kid': kid}).encode())}.{payload}"
    hs_signature = hmac.new(public.as_pem(private=False), hs_input.encode(), hashlib.sha256).digest()
    stranger = RSAKey.generate_key(2048, parameters={"kid": str(uuid.uuid4())})
    forged = {
        "bad signature": f"{header}.{b64(json.dumps(tampered).encode())}.{signature}",
        "signature algorithm not allowed": f"{hs_input}.{b64(hs_signature)}",
        "unknown key id": jwt.encode({"alg": "RS256", "kid": stranger.kid}, claims, stranger),
    }
    none_token = f"{b64(json.dumps({'alg': 'none', 'typ': 'JWT'}).encode())}.{payload}."
    event = examples.consent_given()
    with structlog.testing.capture_logs() as logs:
        for token in [*forged.values(), none_token]:
            answer = consent_api.post("/v1/decisions", json=event, headers=bearer(token))
            assert answer.status_code == 401
            assert answer.headers["www-authenticate"] == 'Bearer error="invalid_token"'
    reasons = [entry["reason"] for entry in logs if entry["event"] == "bearer_refused"]
    assert reasons == [*forged, "signature algorithm not allowed"]
    logged = repr(logs)
    assert payload not in logged and signature not in logged


def claims_of(token: str) -> dict:
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def refusal_reasons(api: TestClient, tokens: list[str]) -> list[str]:
    """Post a decision with each token: every answer must be a 401; the reasons logged."""
    with structlog.testing.capture_logs() as logs:
        for token in tokens:
            answer = api.post("/v1/decisions", json=examples.consent_given(), headers=bearer(token))
            assert answer.status_code == 401, answer.text
            assert answer.headers["www-authenticate"] == 'Bearer error="invalid_token"'
    logged = repr(logs)
    assert not any(token.split(".")[1] in logged for token in tokens), "a token in the log"
    return [entry["reason"] for entry in logs if entry["event"] == "bearer_refused"]


def test_keycloak_tokens_of_another_issuer_without_a_role_or_expired_are_401(
    provider_env: str, consent_api: TestClient, monkeypatch: pytest.MonkeyPatch, tmp_path
):
    """Real tokens Keycloak signed, each wrong in one way, with no key of ours involved:

    * another issuer: Keycloak names the issuer after the address it was asked at, so the
      police client's token fetched through ``localhost`` says ``iss: http://localhost:…``
      while henvis trusts ``http://127.0.0.1:…``;
    * no role claim: the realm's ``roleless-short-lived-system`` has the consent API's
      audience but no henvis role;
    * expired: the same client's tokens live 5 s; the test waits until the token's own
      ``exp`` has passed (by its claim, not by a timer) and asks an API with no leeway.
    """
    police = client_credentials_token(provider_env.replace("127.0.0.1", "localhost"), POLICE_CLIENT)
    assert claims_of(police)["iss"] != provider_env
    roleless = client_credentials_token(provider_env, (ROLELESS_CLIENT, secret_of(ROLELESS_CLIENT)))
    assert refusal_reasons(consent_api, [police, roleless]) == ["wrong issuer", "missing role claim"]

    monkeypatch.setenv("HENVIS_ACCESS_TOKEN_LEEWAY_SECONDS", "0")
    database_url = f"sqlite:///{tmp_path / 'strict.db'}"
    settings = ConsentSettings(database_url=database_url, **KEY_SETTINGS)
    strict = create_consent_app(
        settings, engine=migrated_engine(database_url), clients=ClientRegistry.from_settings(settings)
    )
    expires = claims_of(roleless)["exp"]
    while time.time() <= expires:
        time.sleep(0.2)
    with TestClient(strict) as api:
        assert refusal_reasons(api, [roleless]) == ["expired"]
    strict.state.engine.dispose()


def test_the_inbox_gets_its_data_keys_with_its_own_client_credentials(provider_env: str, tmp_path):
    """With a provider the consent API takes no static tokens, so the Herning inbox asks the key
    store as its realm client ``henvis-inbox-herning`` (HENVIS_CENTRE_KEY_STORE_CLIENTS)."""
    database_url = f"sqlite:///{tmp_path / 'consent.db'}"
    settings = ConsentSettings(database_url=database_url, **KEY_SETTINGS)
    app = create_consent_app(
        settings, engine=migrated_engine(database_url), clients=ClientRegistry.from_settings(settings)
    )
    police = bearer(client_credentials_token(provider_env, POLICE_CLIENT))
    with served(app, free_port()) as key_store:
        referral_ids = {}
        for centre, municipality in (("herning", "657"), ("viborg", "791")):
            decision = examples.consent_given(case_ref=f"4100-KS-{centre}", municipality_code=municipality)
            answer = httpx.post(f"{key_store}/v1/decisions", json=decision, headers=police)
            assert answer.status_code == 202, answer.text
            referral_ids[centre] = answer.json()["referral_id"]
        inbox_client = {"client_id": "henvis-inbox-herning", "client_secret": secret_of("henvis-inbox-herning")}
        inbox = centre_settings(
            f"sqlite:///{tmp_path / 'centre.db'}",
            centres="herning",
            key_store_url=key_store,
            key_store_clients=json.dumps({"herning": inbox_client}),
        )
        keys = inbox.data_keys(["herning"])
        assert len(keys.fetch("herning", referral_ids["herning"]) or b"") == 32
        assert keys.fetch("herning", referral_ids["viborg"]) is None, "Viborg's key is not Herning's"
        keys.close()
    app.state.engine.dispose()


def test_submit_delivers_a_batch_as_the_police_client_and_stops_on_a_wrong_secret(provider_env: str, tmp_path):
    """``henvis consent submit --client-id``: the batch tool gets its own tokens from the provider."""
    database_url = f"sqlite:///{tmp_path / 'consent.db'}"
    settings = ConsentSettings(database_url=database_url, **KEY_SETTINGS)
    app = create_consent_app(
        settings, engine=migrated_engine(database_url), clients=ClientRegistry.from_settings(settings)
    )
    given = examples.consent_given()
    events = [given, examples.consent_declined(), examples.consent_withdrawn(case_ref=given["case_ref"])]
    batch = tmp_path / "batch.jsonl"
    batch.write_text("".join(json.dumps(event) + "\n" for event in events), encoding="utf-8")
    secret_file = tmp_path / "secret"
    secret_file.write_text(secret_of("police-case-system") + "\n", encoding="utf-8")
    env = {**os.environ, "HENVIS_ACCESS_TOKEN_ISSUER": provider_env, "HENVIS_RUN_DIR": str(tmp_path)}
    with served(app, free_port()) as url:
        command = [*HENVIS, "consent", "submit", str(batch), "--url", url, "--client-id", "police-case-system"]
        delivered = subprocess.run(
            [*command, "--client-secret-file", str(secret_file)], capture_output=True, text=True, env=env, cwd=REPO
        )
        secret_file.write_text("wrong", encoding="utf-8")
        refused = subprocess.run(
            [*command, "--client-secret-file", str(secret_file)], capture_output=True, text=True, env=env, cwd=REPO
        )
    app.state.engine.dispose()
    assert delivered.returncode == 0, delivered.stderr
    assert "accepted 3, already accepted before 0, failed 0" in delivered.stdout
    assert refused.returncode == 3
    assert "the identity provider gave no access token" in refused.stderr
    assert "wrong" not in refused.stderr + refused.stdout
    assert secret_of("police-case-system") not in delivered.stderr + delivered.stdout
