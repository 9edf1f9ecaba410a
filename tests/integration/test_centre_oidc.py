"""Caseworkers sign in to the centre inbox through a real Keycloak (OpenID Connect).

The inbox app runs in-process (TestClient at http://127.0.0.1:8999, a redirect URI the realm
allows); the browser's side at Keycloak is an httpx client that fills in Keycloak's own login
form. Each refusal is checked as a user meets it (the status and the page) and as an operator
reads it (the log line's reason, with no code or token in any log line).
"""

from __future__ import annotations

import re
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

import pytest
from fastapi.testclient import TestClient
from structlog.testing import capture_logs

from henvis.services.centre import store_intake
from henvis.services.centre.api import build_app
from henvis_dev.keycloak_realm import WEB_CLIENT, secret_of
from tests.centre_fakes import KEYS, centre_settings, referral_issued
from tests.oidc_support import sign_in_at_keycloak

BASE = "http://127.0.0.1:8999"


def _app(tmp_path, keycloak, **overrides):
    settings = centre_settings(
        f"sqlite:///{tmp_path / 'centre.db'}",
        centres="herning,viborg",
        login="oidc",
        oidc_issuer=keycloak.issuer,
        oidc_client_id=WEB_CLIENT,
        oidc_client_secret=secret_of(WEB_CLIENT),
        secure_cookies=False,  # http on loopback, as a developer runs it
        **overrides,
    )
    return build_app(settings, keys=KEYS)


@pytest.fixture
def app(tmp_path, keycloak):
    app = _app(tmp_path, keycloak, oidc_required_acr="low")
    yield app
    app.state.centre.engine.dispose()


def _issue(app, centre: str) -> str:
    event = referral_issued(centre)
    store_intake.ingest_issued(app.state.centre.engine, event, centre)
    return str(event.referral_id)


def _authorization_url(client: TestClient) -> str:
    answer = client.get("/login/oidc", follow_redirects=False)
    assert answer.status_code == 302
    return answer.headers["location"]


def _sign_in_at_keycloak(authorization_url: str, username: str) -> str:
    return sign_in_at_keycloak(authorization_url, username, BASE)


def _sign_in(client: TestClient, username: str):
    return client.get(_sign_in_at_keycloak(_authorization_url(client), username), follow_redirects=False)


def _no_secret_in(logs: list[dict], *secrets: str) -> None:
    text = repr(logs)
    for secret in secrets:
        assert secret not in text


def test_herning_caseworker_sees_herning_only_and_a_viborg_one_gets_404(app):
    herning_id, viborg_id = _issue(app, "herning"), _issue(app, "viborg")
    with TestClient(app, base_url=BASE) as herning:
        answer = _sign_in(herning, "caseworker-herning")
        assert answer.status_code == 303 and answer.headers["location"] == "/indbakke"
        inbox = herning.get("/indbakke")
        assert inbox.status_code == 200 and "caseworker-herning" in inbox.text
        assert herning_id in inbox.text and viborg_id not in inbox.text
    with TestClient(app, base_url=BASE) as viborg:
        assert _sign_in(viborg, "caseworker-viborg").status_code == 303
        assert viborg.get(f"/henvisning/{herning_id}").status_code == 404
        assert viborg.get(f"/henvisning/{viborg_id}").status_code == 200


def test_a_replayed_callback_is_refused_even_with_the_old_flow_cookie(app):
    with TestClient(app, base_url=BASE) as client:
        authorization_url = _authorization_url(client)
        flow_cookie = client.cookies.get("henvis_centre_login_flow")
        callback = _sign_in_at_keycloak(authorization_url, "caseworker-herning")
        assert client.get(callback, follow_redirects=False).status_code == 303
        client.cookies.clear()
        client.cookies.set("henvis_centre_login_flow", flow_cookie)
        with capture_logs() as logs:
            replayed = client.get(callback, follow_redirects=False)
        assert replayed.status_code == 401
        assert "allerede brugt" in replayed.text
        assert client.get("/indbakke", follow_redirects=False).headers["location"] == "/login"
    code = parse_qs(urlsplit(callback).query)["code"][0]
    refused = [entry for entry in logs if entry["event"] == "login_refused"]
    assert refused and refused[0]["reason"] == "state_unknown_or_replayed"
    _no_secret_in(logs, code)


def test_an_id_token_with_another_nonce_is_refused(app):
    with TestClient(app, base_url=BASE) as client:
        authorization_url = _authorization_url(client)
        parts = urlsplit(authorization_url)
        query = {key: values[0] for key, values in parse_qs(parts.query).items()}
        query["nonce"] = "a-nonce-henvis-never-made"  # what an attacker's injected ID token would carry
        callback = _sign_in_at_keycloak(urlunsplit(parts._replace(query=urlencode(query))), "caseworker-herning")
        with capture_logs() as logs:
            answer = client.get(callback, follow_redirects=False)
        assert answer.status_code == 401
        assert "kunne ikke godkendes" in answer.text
        assert client.get("/indbakke", follow_redirects=False).status_code == 303
    refused = [entry for entry in logs if entry["event"] == "login_refused"]
    assert refused and refused[0]["reason"] == "id_token_invalid" and refused[0]["detail"] == "nonce"
    _no_secret_in(logs, parse_qs(urlsplit(callback).query)["code"][0])


def test_a_login_without_the_required_acr_is_refused_with_a_page_that_says_why(tmp_path, keycloak):
    app = _app(tmp_path, keycloak, oidc_required_acr="substantial")
    with TestClient(app, base_url=BASE) as client:
        assert "acr_values=substantial" in _authorization_url(client)
        with capture_logs() as logs:
            answer = _sign_in(client, "caseworker-herning")
        assert answer.status_code == 403
        assert "sikringsniveau »low«" in answer.text and "kræver »substantial«" in answer.text
        assert client.get("/indbakke", follow_redirects=False).headers["location"] == "/login"
    refused = [entry for entry in logs if entry["event"] == "login_refused"]
    assert refused[0]["reason"] == "acr_insufficient" and refused[0]["detail"] == "low"
    app.state.centre.engine.dispose()


def test_a_researcher_is_no_caseworker(app):
    with TestClient(app, base_url=BASE) as client:
        answer = _sign_in(client, "researcher")
        assert answer.status_code == 403 and "rollen som sagsbehandler" in answer.text


def test_sign_out_ends_the_provider_session_too(app, keycloak):
    with TestClient(app, base_url=BASE) as client:
        _sign_in(client, "caseworker-herning")
        inbox = client.get("/indbakke")
        csrf = re.search(r'name="csrf_token" value="([^"]+)"', inbox.text)[1]
        assert f"form-action 'self' {keycloak.base_url};" in inbox.headers["content-security-policy"]
        answer = client.post("/logout", data={"csrf_token": csrf}, follow_redirects=False)
        assert answer.status_code == 303
        end_session = answer.headers["location"]
        assert end_session.startswith(f"{keycloak.issuer}/protocol/openid-connect/logout?")
        query = parse_qs(urlsplit(end_session).query)
        assert query["post_logout_redirect_uri"] == [f"{BASE}/login?logget_ud=1"] and query["id_token_hint"]
        assert client.get("/indbakke", follow_redirects=False).headers["location"] == "/login"


def test_an_auditor_reads_the_access_log_page_and_opens_no_inbox(app):
    herning_id = _issue(app, "herning")
    with TestClient(app, base_url=BASE) as caseworker:
        _sign_in(caseworker, "caseworker-herning")
        assert caseworker.get(f"/henvisning/{herning_id}").status_code == 200
        assert caseworker.get("/adgangslog", follow_redirects=False).headers["location"] == "/login"
    with TestClient(app, base_url=BASE) as auditor:
        answer = _sign_in(auditor, "auditor")
        assert answer.status_code == 303 and answer.headers["location"] == "/adgangslog"
        page = auditor.get("/adgangslog")
        assert page.status_code == 200 and "Revisor · auditor" in page.text
        assert "caseworker-herning" in page.text and herning_id in page.text
        only_one = auditor.get("/adgangslog", params={"henvisning": herning_id})
        assert only_one.text.count(herning_id) >= 2 and "auditor</td>" not in only_one.text
        assert auditor.get("/adgangslog", params={"henvisning": "x"}).status_code == 422
        assert auditor.get("/indbakke", follow_redirects=False).headers["location"] == "/login"
        assert auditor.get(f"/henvisning/{herning_id}", follow_redirects=False).headers["location"] == "/login"
