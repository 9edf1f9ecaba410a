"""The provider's claims in henvis's terms: roles, centre, acr; and the session's idle timeout."""

from __future__ import annotations

import asyncio
import time

import pytest

from henvis.oidc import ClaimMapping, FlowCache, Login, LoginRefused, OidcLoginSettings, caseworker_centre, map_login
from henvis.services.centre.auth import Session, SessionSigner

KEYCLOAK = ClaimMapping()
ENTRA = ClaimMapping(
    roles_claim="roles",
    role_map={"Henvis.Caseworker": "caseworker"},
    centre_claim="groups",
    centre_prefix="",
    centre_map={"5f1c0000-0000-0000-0000-000000000657": "herning"},
    username_claim="upn",
    required_acr="substantial",
)


def test_keycloak_claims_name_a_herning_caseworker():
    claims = {
        "preferred_username": "caseworker-herning",
        "henvis_roles": ["caseworker"],
        "groups": ["/centres/herning"],
    }
    login = map_login(claims, KEYCLOAK)
    assert login == Login("caseworker-herning", frozenset({"caseworker"}), frozenset({"herning"}))
    assert caseworker_centre(login, ["herning", "viborg"]) == "herning"
    assert caseworker_centre(login, ["viborg"]) == LoginRefused("centre_not_served")


def test_entra_group_ids_and_app_roles_map_through_the_tables():
    claims = {
        "upn": "anne@herning.dk",
        "roles": ["Henvis.Caseworker", "Something.Else"],
        "groups": ["5f1c0000-0000-0000-0000-000000000657", "unrelated-group"],
        "acr": "substantial",
    }
    login = map_login(claims, ENTRA)
    assert isinstance(login, Login) and login.roles == {"caseworker"} and login.centres == {"herning"}


@pytest.mark.parametrize(
    ("claims", "reason"),
    [
        ({"upn": "a", "roles": ["Henvis.Caseworker"], "acr": "low"}, "acr_insufficient"),
        ({"upn": "a", "roles": ["Henvis.Caseworker"]}, "acr_insufficient"),
        ({"upn": "a", "roles": ["Other"], "acr": "substantial"}, "no_role"),
        ({"roles": ["Henvis.Caseworker"], "acr": "substantial"}, "no_username"),
    ],
)
def test_refusals_say_why(claims, reason):
    refused = map_login(claims, ENTRA)
    assert isinstance(refused, LoginRefused) and refused.reason == reason


def test_a_caseworker_without_a_centre_or_with_two_is_refused():
    nowhere = map_login({"sub": "x", "henvis_roles": "caseworker"}, KEYCLOAK)
    assert caseworker_centre(nowhere, ["herning"]) == LoginRefused("no_centre")
    two = map_login(
        {"sub": "x", "henvis_roles": ["caseworker"], "groups": ["/centres/herning", "/centres/viborg"]}, KEYCLOAK
    )
    assert caseworker_centre(two, ["herning", "viborg"]) == LoginRefused("centre_not_served")


def test_oidc_login_needs_issuer_and_client():
    with pytest.raises(ValueError, match="issuer, client id and client secret"):
        OidcLoginSettings(login="oidc", oidc_issuer="https://idp.example.dk/realms/henvis")


def test_an_idle_session_ends_on_the_server(monkeypatch):
    signer = SessionSigner(b"k" * 32, max_age_seconds=8 * 3600, idle_seconds=60)
    cookie = signer.dumps(Session.for_user("anne", "herning", id_token="header.payload.signature"))
    assert signer.loads(cookie).id_token == "header.payload.signature"
    started = time.time()
    monkeypatch.setattr(time, "time", lambda: started + 59)
    assert signer.loads(cookie) is not None
    refreshed = signer.dumps(signer.loads(cookie))  # every answer re-signs: the idle clock restarts
    monkeypatch.setattr(time, "time", lambda: started + 61)
    assert signer.loads(cookie) is None
    assert signer.loads(refreshed) is not None


def test_the_flow_cache_uses_each_state_once_and_stays_bounded():
    async def scenario():
        cache = FlowCache(max_entries=3)
        await cache.set("a", "1", 3600)
        assert await cache.get("a") == "1"
        await cache.delete("a")
        assert await cache.get("a") is None
        for key in "bcde":
            await cache.set(key, key)
        return [await cache.get(key) for key in "bcde"]

    assert asyncio.run(scenario()) == [None, "c", "d", "e"]
