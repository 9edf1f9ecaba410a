"""Signing in at the tests' Keycloak as a person would, without a browser (httpx fills in its form)."""

from __future__ import annotations

import html
import re

import httpx

from henvis_dev.keycloak_realm import DEMO_PASSWORD


def sign_in_at_keycloak(authorization_url: str, username: str, base: str) -> str:
    """Keycloak's login form filled in as a person would; returns where Keycloak sends the browser back."""
    with httpx.Client(timeout=60) as browser:
        form_page = browser.get(authorization_url)
        assert form_page.status_code == 200, form_page.text[:500]
        action = html.unescape(re.search(r'<form[^>]*id="kc-form-login"[^>]*action="([^"]+)"', form_page.text)[1])
        # Keycloak marks its cookies Secure; a browser sends them to a loopback http origin, httpx does not.
        cookies = "; ".join(f"{cookie.name}={cookie.value}" for cookie in browser.cookies.jar)
        answer = browser.post(
            action,
            data={"username": username, "password": DEMO_PASSWORD, "credentialId": ""},
            headers={"Cookie": cookies},
        )
        assert answer.status_code == 302, answer.text[:500]
        back = answer.headers["location"]
    assert back.startswith(f"{base}/login/callback?")
    return back.removeprefix(base)
