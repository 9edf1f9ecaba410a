"""Researchers sign in to the statistics page through the real Keycloak (OpenID Connect).

The stats app runs in-process on an empty SQLite database (the figures are tested elsewhere);
what is checked here is who gets the page: a researcher yes, a caseworker no (403 with why),
a replayed callback no, and signing out ends the provider's session too.
"""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest
from fastapi.testclient import TestClient
from structlog.testing import capture_logs

from henvis.services.stats.api import create_stats_app
from henvis.services.stats.settings import StatsSettings
from henvis_dev.keycloak_realm import WEB_CLIENT, secret_of
from tests.oidc_support import sign_in_at_keycloak

BASE = "http://127.0.0.1:8998"


@pytest.fixture
def app(tmp_path, keycloak):
    settings = StatsSettings(
        database_url=f"sqlite:///{tmp_path / 'stats.db'}",
        login="oidc",
        oidc_issuer=keycloak.issuer,
        oidc_client_id=WEB_CLIENT,
        oidc_client_secret=secret_of(WEB_CLIENT),
        oidc_required_acr="low",
        session_secret="stats-session-secret-for-tests-0123456789",
    )
    return create_stats_app(settings)


def _sign_in(client: TestClient, username: str):
    started = client.get("/login/oidc", follow_redirects=False)
    assert started.status_code == 302
    return client.get(sign_in_at_keycloak(started.headers["location"], username, BASE), follow_redirects=False)


def test_a_researcher_signs_in_sees_the_page_and_signs_out_at_the_provider(app, keycloak):
    with TestClient(app, base_url=BASE) as client:
        refused = client.get("/")
        assert refused.status_code == 401 and 'action="/login/oidc"' in refused.text
        answer = _sign_in(client, "researcher")
        assert answer.status_code == 303 and answer.headers["location"] == "/"
        page = client.get("/")
        assert page.status_code == 200 and "Log ud" in page.text
        out = client.post("/logout", follow_redirects=False)
        assert out.status_code == 303
        assert out.headers["location"].startswith(f"{keycloak.issuer}/protocol/openid-connect/logout?")
        assert parse_qs(urlsplit(out.headers["location"]).query)["id_token_hint"]
        assert client.get("/").status_code == 401


def test_a_caseworker_is_no_researcher(app):
    with TestClient(app, base_url=BASE) as client, capture_logs() as logs:
        answer = _sign_in(client, "caseworker-herning")
        assert answer.status_code == 403 and "rollen som forsker" in answer.text
        assert client.get("/").status_code == 401
    assert [entry["reason"] for entry in logs if entry["event"] == "login_refused"] == ["no_role"]


def test_a_replayed_callback_is_refused(app):
    with TestClient(app, base_url=BASE) as client:
        started = client.get("/login/oidc", follow_redirects=False)
        callback = sign_in_at_keycloak(started.headers["location"], "researcher", BASE)
        assert client.get(callback, follow_redirects=False).status_code == 303
        client.post("/logout", follow_redirects=False)
        with capture_logs() as logs:
            assert client.get(callback, follow_redirects=False).status_code == 401
    refused = [entry for entry in logs if entry["event"] == "login_refused"]
    assert refused[0]["reason"] == "state_unknown_or_replayed"
    assert parse_qs(urlsplit(callback).query)["code"][0] not in repr(logs)
