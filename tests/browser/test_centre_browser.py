"""A caseworker in headless chromium against a live `henvis centre serve`.

Set ``HENVIS_UPDATE_SCREENSHOTS=1`` to refresh docs/screenshots/centre-*.png from this run.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from henvis.db import migrate
from henvis.services.centre import database, store_intake, store_outcomes, store_users
from henvis.services.centre.auth import hash_password
from tests.centre_fakes import (
    KEY_STORE_TOKENS,
    SESSION_SECRET,
    api_clients_json,
    key_store_over_http,
    referral_issued,
)
from tests.helpers import free_port, wait_until

pytestmark = [pytest.mark.browser, pytest.mark.slow]

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--headless",
    "--disable-gpu",
    "--disable-background-networking",
    "--lang=da-DK",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
PASSWORD = "sommer-i-herning-2026"
SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"


@pytest.fixture
def seeded(tmp_path):
    """An inbox with realistic (fake) referrals for Herning and one for Holstebro."""
    url = f"sqlite:///{tmp_path / 'centre.db'}"
    migrate(url, "centre")
    engine = database.make_centre_engine(url)
    store_users.add_user(engine, "anne.herning", "herning", hash_password(PASSWORD))
    store_users.add_user(engine, "bo.holstebro", "holstebro", hash_password(PASSWORD))
    now = datetime.now(UTC)
    today = now.date()
    newest = referral_issued(
        "herning", person_index=0, issued_at=now - timedelta(hours=2), contact_due_by=today + timedelta(days=1)
    )
    others = [
        referral_issued(
            "herning",
            person_index=3,
            issued_at=now - timedelta(days=4),
            offence="drug_driving",
            contact_due_by=today - timedelta(days=2),
            treatment_due_by=today + timedelta(days=10),
        ),
        referral_issued(
            "herning",
            person_index=2,
            issued_at=now - timedelta(days=1),
            offence="drink_and_drug_driving",
            contact_due_by=today,
            treatment_due_by=today + timedelta(days=13),
        ),
        referral_issued(
            "herning",
            person_index=1,
            issued_at=now - timedelta(days=3),
            contact_due_by=today + timedelta(days=2),
            treatment_due_by=today + timedelta(days=11),
        ),
    ]
    for event in [newest, *others]:
        store_intake.ingest_issued(engine, event, "herning")
    store_outcomes.record_outcome(
        engine,
        centre="herning",
        referral_id=str(others[2].referral_id),
        outcome="contact_attempted",
        actor="anne.herning",
        actor_kind="user",
    )
    store_intake.ingest_issued(engine, referral_issued("holstebro", person_index=1), "holstebro")
    engine.dispose()
    return url, str(newest.referral_id)


@pytest.fixture
def key_store_fixture():
    with key_store_over_http() as url:
        yield url


@pytest.fixture
def server(seeded, tmp_path, key_store_fixture):
    url, referral_id = seeded
    port = free_port()
    key_store = key_store_fixture
    env = {
        **os.environ,
        "HENVIS_CENTRE_KEY_STORE_URL": key_store,
        "HENVIS_CENTRE_KEY_STORE_TOKENS": json.dumps(KEY_STORE_TOKENS),
        "HENVIS_CENTRE_DATABASE_URL": url,
        "HENVIS_CENTRE_SESSION_SECRET": SESSION_SECRET,
        "HENVIS_API_CLIENTS": api_clients_json(),
        "HENVIS_CENTRE_CENTRES": "herning,holstebro",
        "HENVIS_RUN_DIR": str(tmp_path),
    }
    with centre_served(env, port, tmp_path / "serve.log") as base:
        yield base, referral_id


@contextmanager
def centre_served(env: dict[str, str], port: int, log_path: Path) -> Iterator[str]:
    """``henvis centre serve`` as its own process with ``env``, ready, until the block ends; its URL."""
    log = open(log_path, "w")  # noqa: SIM115 - the server writes to it until the block ends
    process = subprocess.Popen(
        [sys.executable, "-m", "henvis.cli", "centre", "serve", "--port", str(port)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until(
            lambda: httpx.get(f"{base}/readyz").status_code == 200,
            timeout=60,
            ignore=(httpx.HTTPError,),
            message="centre serve did not become ready",
        )
        yield base
    finally:
        process.terminate()
        process.wait(timeout=30)
        log.close()


@pytest.fixture
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


def _login(page, base: str, username: str) -> None:
    page.goto(f"{base}/login")
    page.get_by_label("Brugernavn").fill(username)
    page.get_by_label("Adgangskode").fill(PASSWORD)
    page.get_by_role("button", name="Log ind").click()
    page.wait_for_url(f"{base}/indbakke")


def test_caseworker_records_contact_interview_and_follow_up_until_closed(server, browser):
    base, referral_id = server
    update = os.environ.get("HENVIS_UPDATE_SCREENSHOTS") == "1"
    page = browser.new_context(viewport={"width": 1200, "height": 760}, locale="da-DK").new_page()
    _login(page, base, "anne.herning")

    rows = page.locator("table.inbox tbody tr")
    assert rows.count() == 4
    assert "Overskredet" in rows.nth(0).inner_text()  # the overdue referral is first and highlighted
    if update:
        page.screenshot(path=str(SCREENSHOTS / "centre-inbox.png"), full_page=True)

    page.locator(f'a[href="/henvisning/{referral_id}"]').click()
    assert page.get_by_text("Mette Kjær Sørensen").is_visible()
    assert page.get_by_role("button", name="Forløb ud over første samtale aftalt").count() == 0

    page.get_by_role("button", name="Kontakt opnået").click()
    assert page.get_by_role("status").inner_text() == "Registreret: Kontakt opnået."
    page.get_by_role("button", name="Første samtale holdt").click()
    assert page.get_by_role("status").inner_text() == "Registreret: Første samtale holdt."
    if update:
        page.screenshot(path=str(SCREENSHOTS / "centre-detail.png"), full_page=True)
    page.get_by_role("button", name="Forløb ud over første samtale aftalt").click()
    assert page.get_by_role("status").inner_text() == "Registreret: Forløb ud over første samtale aftalt."
    assert page.get_by_text("Henvisningen er afsluttet").is_visible()

    page.get_by_role("link", name="Tilbage til indbakken").click()
    assert page.locator(f'a[href="/henvisning/{referral_id}"]').count() == 0
    page.get_by_role("link", name="Afsluttede").click()
    assert page.locator(f'a[href="/henvisning/{referral_id}"]').count() == 1

    # Keyboard only: the skip link is the first stop and is visible when focused.
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Spring til indhold"

    other = browser.new_context().new_page()
    _login(other, base, "bo.holstebro")
    other.get_by_role("link", name="Afsluttede").click()
    assert other.locator(f'a[href="/henvisning/{referral_id}"]').count() == 0
    other.goto(f"{base}/henvisning/{referral_id}")
    assert other.get_by_role("heading", name="Henvisningen findes ikke").is_visible()
    assert other.get_by_text("Mette").count() == 0
