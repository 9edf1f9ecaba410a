"""A Herning caseworker in headless chromium signs in through Keycloak's own login page.

`henvis centre serve` with ``HENVIS_CENTRE_LOGIN=oidc`` against the session's Keycloak: the
caseworker sees Herning's inbox only, records an outcome, signs out (which ends the Keycloak
session too), and the back button does not bring the inbox back.

Set ``HENVIS_UPDATE_SCREENSHOTS=1`` to refresh docs/screenshots/centre-login-*.png from this run.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

from henvis.db import migrate
from henvis.services.centre import database, store_intake
from henvis_dev.keycloak_realm import DEMO_PASSWORD, WEB_CLIENT, secret_of
from tests.browser.test_centre_browser import SCREENSHOTS, browser, centre_served, key_store_fixture
from tests.centre_fakes import KEY_STORE_TOKENS, SESSION_SECRET, api_clients_json, referral_issued
from tests.helpers import free_port

pytestmark = [pytest.mark.browser, pytest.mark.slow]

__all__ = ["browser", "key_store_fixture"]  # fixtures shared with the password-login browser test


@pytest.fixture
def server(tmp_path: Path, key_store_fixture: str, keycloak):
    url = f"sqlite:///{tmp_path / 'centre.db'}"
    migrate(url, "centre")
    engine = database.make_centre_engine(url)
    herning = referral_issued("herning", person_index=0)
    viborg = referral_issued("viborg", person_index=1)
    store_intake.ingest_issued(engine, herning, "herning")
    store_intake.ingest_issued(engine, viborg, "viborg")
    engine.dispose()
    port = free_port()
    env = {
        **os.environ,
        "HENVIS_CENTRE_KEY_STORE_URL": key_store_fixture,
        "HENVIS_CENTRE_KEY_STORE_TOKENS": json.dumps(KEY_STORE_TOKENS | {"viborg": "keys-viborg"}),
        "HENVIS_CENTRE_DATABASE_URL": url,
        "HENVIS_CENTRE_SESSION_SECRET": SESSION_SECRET,
        "HENVIS_API_CLIENTS": api_clients_json(),
        "HENVIS_CENTRE_CENTRES": "herning,viborg",
        "HENVIS_RUN_DIR": str(tmp_path),
        "HENVIS_CENTRE_LOGIN": "oidc",
        "HENVIS_CENTRE_OIDC_ISSUER": keycloak.issuer,
        "HENVIS_CENTRE_OIDC_CLIENT_ID": WEB_CLIENT,
        "HENVIS_CENTRE_OIDC_CLIENT_SECRET": secret_of(WEB_CLIENT),
        "HENVIS_CENTRE_OIDC_REQUIRED_ACR": "low",
    }
    with centre_served(env, port, tmp_path / "serve.log") as base:
        yield base, str(herning.referral_id), str(viborg.referral_id)


def _sign_in_at_keycloak(page, username: str, screenshot: Path | None = None) -> None:
    page.get_by_role("button", name="Log ind med kommunens login").click()
    page.wait_for_selector("#username")
    page.fill("#username", username)
    page.fill("#password", DEMO_PASSWORD)
    if screenshot:
        page.screenshot(path=str(screenshot), full_page=True)
    page.click("#kc-login")


def test_herning_caseworker_signs_in_at_keycloak_records_an_outcome_and_signs_out(server, browser):
    base, herning_id, viborg_id = server
    update = os.environ.get("HENVIS_UPDATE_SCREENSHOTS") == "1"
    page = browser.new_context(viewport={"width": 1200, "height": 760}, locale="da-DK").new_page()

    page.goto(f"{base}/indbakke")
    page.wait_for_url(f"{base}/login")
    if update:
        page.screenshot(path=str(SCREENSHOTS / "centre-login-oidc.png"), full_page=True)
    _sign_in_at_keycloak(page, "caseworker-herning", SCREENSHOTS / "centre-login-keycloak.png" if update else None)
    page.wait_for_url(f"{base}/indbakke")

    assert page.locator(f'a[href="/henvisning/{herning_id}"]').count() == 1
    assert page.locator(f'a[href="/henvisning/{viborg_id}"]').count() == 0
    assert "caseworker-herning" in page.locator(".who").inner_text()

    page.locator(f'a[href="/henvisning/{herning_id}"]').click()
    assert page.get_by_text("Mette Kjær Sørensen").is_visible()
    page.get_by_role("button", name="Kontakt opnået").click()
    assert page.get_by_role("status").inner_text() == "Registreret: Kontakt opnået."

    page.get_by_role("button", name="Log ud").click()
    page.wait_for_url(re.compile(re.escape(f"{base}/login?logget_ud=1")))  # with the provider's state after it
    assert page.get_by_text("Du er logget ud – også hos jeres login-tjeneste.").is_visible()

    page.go_back()
    page.wait_for_load_state()
    assert page.url == f"{base}/login"
    assert page.get_by_text("Mette Kjær Sørensen").count() == 0
    assert page.locator("table.inbox").count() == 0

    # The provider's session ended too: signing in again asks for the password again.
    page.get_by_role("button", name="Log ind med kommunens login").click()
    page.wait_for_selector("#password")
    assert page.locator("#password").is_visible()
