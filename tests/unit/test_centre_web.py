"""The caseworkers' web page: login, CSRF, rate limit, cookies, buttons and confirmations."""

from __future__ import annotations

import re
import uuid

import pytest
from fastapi.testclient import TestClient

from henvis.services.centre import store_access_log, store_intake, store_users
from henvis.services.centre.api import build_app
from henvis.services.centre.auth import hash_password
from tests.centre_fakes import KEYS, centre_settings, personal_strings, referral_issued

PASSWORD = "korrekt-hest-batteri-hæfteklamme"


@pytest.fixture
def app(tmp_path):
    app = build_app(centre_settings(f"sqlite:///{tmp_path / 'centre.db'}"), keys=KEYS)
    engine = app.state.centre.engine
    store_users.add_user(engine, "anne.herning", "herning", hash_password(PASSWORD))
    store_users.add_user(engine, "bo.holstebro", "holstebro", hash_password(PASSWORD))
    yield app
    engine.dispose()


def _csrf(html: str) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)


def _login(client: TestClient, username: str, password: str = PASSWORD):
    token = _csrf(client.get("/login").text)
    return client.post(
        "/login", data={"username": username, "password": password, "csrf_token": token}, follow_redirects=False
    )


def _issue(app, centre="herning", **kwargs):
    event = referral_issued(centre, **kwargs)
    store_intake.ingest_issued(app.state.centre.engine, event, centre)
    return str(event.referral_id)


def test_login_sets_a_safe_session_cookie_and_opens_the_inbox(app):
    with TestClient(app, base_url="http://localhost") as client:
        answer = _login(client, "anne.herning")
        assert answer.status_code == 303 and answer.headers["location"] == "/indbakke"
        cookie = answer.headers["set-cookie"]
        assert "HttpOnly" in cookie and "SameSite=lax" in cookie and "Secure" not in cookie
        page = client.get("/indbakke")
        assert page.status_code == 200 and "Indbakke – Rusmiddelcenter Herning" in page.text
        assert '<html lang="da">' in page.text


def test_cookie_is_secure_outside_localhost(app):
    with TestClient(app, base_url="https://centre.example.dk") as client:
        cookie = _login(client, "anne.herning").headers["set-cookie"]
        assert "Secure" in cookie


def test_pages_need_a_login(app):
    referral_id = _issue(app)
    with TestClient(app, base_url="http://localhost") as client:
        for path in ("/indbakke", f"/henvisning/{referral_id}"):
            answer = client.get(path, follow_redirects=False)
            assert answer.status_code == 303 and answer.headers["location"] == "/login"


def test_a_form_post_without_a_valid_csrf_token_is_refused(app):
    referral_id = _issue(app)
    with TestClient(app, base_url="http://localhost") as client:
        no_token = client.post(
            "/login", data={"username": "anne.herning", "password": PASSWORD}, follow_redirects=False
        )
        assert no_token.status_code == 403
        _login(client, "anne.herning")
        for data in ({"outcome": "contacted"}, {"outcome": "contacted", "csrf_token": "forged"}):
            refused = client.post(f"/henvisning/{referral_id}/udfald", data=data, follow_redirects=False)
            assert refused.status_code == 403 and "sikkerhedsnøgle" in refused.text
        detail = client.get(f"/henvisning/{referral_id}").text
        assert "Intet registreret endnu" in detail


def test_wrong_password_is_refused_and_repeated_failures_are_rate_limited(app):
    with TestClient(app, base_url="http://localhost") as client:
        for _ in range(5):
            wrong = _login(client, "anne.herning", "forkert-kodeord")
            assert wrong.status_code == 401 and "Forkert brugernavn eller adgangskode" in wrong.text
        limited = _login(client, "anne.herning")  # even the right password waits now
        assert limited.status_code == 429 and "For mange mislykkede forsøg" in limited.text
        assert _login(client, "bo.holstebro").status_code == 303  # another user is not locked out
        unknown = _login(client, "ingen.saadan")
        assert unknown.status_code == 401


def test_detail_shows_contact_details_only_the_next_buttons_and_a_confirmation(app):
    referral_id = _issue(app)
    with TestClient(app, base_url="http://localhost") as client:
        _login(client, "anne.herning")
        detail = client.get(f"/henvisning/{referral_id}").text
        assert "Mette Kjær Sørensen" in detail and "+4521436587" in detail
        buttons = re.findall(r'name="outcome" value="([a-z_]+)"', detail)
        assert buttons == [
            "contact_attempted",
            "contacted",
            "first_interview_held",
            "unreachable",
            "declined_by_person",
            "returned_wrong_centre",
        ]
        answer = client.post(
            f"/henvisning/{referral_id}/udfald",
            data={"outcome": "first_interview_held", "csrf_token": _csrf(detail), "event_id": str(uuid.uuid4())},
        )
        assert answer.status_code == 200
        assert "Registreret: Første samtale holdt." in answer.text
        assert re.findall(r'name="outcome" value="([a-z_]+)"', answer.text) == [
            "follow_up_accepted",
            "declined_by_person",
        ]
        illegal = client.post(
            f"/henvisning/{referral_id}/udfald", data={"outcome": "contacted", "csrf_token": _csrf(detail)}
        )
        assert illegal.status_code == 409 and "kan ikke registreres nu" in illegal.text


def test_a_caseworker_cannot_open_another_centres_referral(app):
    referral_id = _issue(app, "herning")
    with TestClient(app, base_url="http://localhost") as client:
        _login(client, "bo.holstebro")
        assert referral_id not in client.get("/indbakke?fane=open").text
        foreign = client.get(f"/henvisning/{referral_id}")
        assert foreign.status_code == 404 and "Mette" not in foreign.text
        token = _csrf(client.get("/indbakke").text)
        assert (
            client.post(
                f"/henvisning/{referral_id}/udfald", data={"outcome": "contacted", "csrf_token": token}
            ).status_code
            == 404
        )


def test_page_views_are_in_the_access_log_under_the_caseworkers_name(app):
    referral_id = _issue(app)
    with TestClient(app, base_url="http://localhost") as client:
        _login(client, "anne.herning")
        client.get(f"/henvisning/{referral_id}")
    entries = store_access_log.access_log_rows(app.state.centre.engine, referral_id)
    assert [(e["actor"], e["actor_kind"], e["action"]) for e in entries] == [
        ("anne.herning", "user", "view_contact_details")
    ]
    assert not any(value in str(entries) for value in personal_strings())


def test_overdue_referrals_are_highlighted_in_the_inbox(app):
    from datetime import UTC, datetime, timedelta

    _issue(
        app,
        issued_at=datetime.now(UTC) - timedelta(days=5),
        contact_due_by=datetime.now(UTC).date() - timedelta(days=3),
    )
    with TestClient(app, base_url="http://localhost") as client:
        _login(client, "anne.herning")
        page = client.get("/indbakke").text
        assert 'class="status-overdue"' in page and "⚠ Overskredet" in page
        assert 'Overskredne <span class="count">(1)</span>' in page


def test_a_tampered_session_cookie_is_not_a_login_and_logout_ends_the_session(app):
    with TestClient(app, base_url="http://localhost") as client:
        _login(client, "anne.herning")
        genuine = client.cookies.get("henvis_centre_session")
        body, signature = genuine.rsplit(".", 1)
        client.cookies.clear()
        client.cookies.set("henvis_centre_session", f"{body}x.{signature}")
        assert client.get("/indbakke", follow_redirects=False).headers["location"] == "/login"

        client.cookies.clear()
        client.cookies.set("henvis_centre_session", genuine)
        page = client.get("/indbakke")
        assert page.status_code == 200
        logout = client.post("/logout", data={"csrf_token": _csrf(page.text)}, follow_redirects=False)
        assert logout.status_code == 303
        assert client.get("/indbakke", follow_redirects=False).headers["location"] == "/login"


def test_a_caseworker_can_record_yesterdays_call_but_not_tomorrows(app):
    from datetime import datetime, timedelta

    from henvis.deadlines import DANISH_TIME

    referral_id = _issue(app)
    today = datetime.now(DANISH_TIME).date()
    with TestClient(app, base_url="http://localhost") as client:
        _login(client, "anne.herning")
        token = _csrf(client.get(f"/henvisning/{referral_id}").text)
        tomorrow = client.post(
            f"/henvisning/{referral_id}/udfald",
            data={"outcome": "contacted", "dato": (today + timedelta(days=1)).isoformat(), "csrf_token": token},
        )
        assert tomorrow.status_code == 422 and "Dato for udfaldet" in tomorrow.text
        garbled = client.post(
            f"/henvisning/{referral_id}/udfald", data={"outcome": "contacted", "dato": "i går", "csrf_token": token}
        )
        assert garbled.status_code == 422
        yesterday = client.post(
            f"/henvisning/{referral_id}/udfald",
            data={"outcome": "contacted", "dato": (today - timedelta(days=1)).isoformat(), "csrf_token": token},
        )
        assert yesterday.status_code == 200 and "Registreret: Kontakt opnået." in yesterday.text
        assert (today - timedelta(days=1)).strftime("%d-%m-%Y") + " 12:00" in yesterday.text
