"""The ``henvis`` realm of the local Keycloak, built from the centre registry.

``tools/keycloak/henvis-realm.json`` is this module's output (``python -m
henvis_dev.keycloak_realm`` rewrites it, ``--check`` fails when it is stale), so the realm
always has one caseworker per centre of the registry. Everything in it is demo data: the
passwords and client secrets are printed here on purpose and serve only loopback tests.

People (client ``henvis-web``, authorization code + PKCE S256):
    ``caseworker-<slug>`` in group ``/centres/<slug>`` with realm role ``caseworker``,
    ``researcher`` (role ``researcher``), ``auditor`` (role ``auditor``); password
    ``henvis-demo``. Their tokens carry ``groups`` (full group paths) and ``henvis_roles``.
Machines (client credentials):
    ``police-case-system`` (role ``police``, audience ``henvis-consent-api``) and
    ``centre-<slug>-system`` for herning and viborg (role ``centre``, claim ``henvis_centre``,
    audience ``henvis-centre-api``); secret ``<client id>-demo-secret``.
    ``henvis-inbox-herning`` (role ``centre``, ``henvis_centre`` herning, audience
    ``henvis-consent-api``): the Herning inbox's own client for the key store
    (``HENVIS_CENTRE_KEY_STORE_CLIENTS``).
    ``roleless-short-lived-system`` (tests only: audience ``henvis-consent-api``, no henvis
    role, tokens that live 5 s), so the tests get real tokens that lack the role claim and
    that expire.
Authentication context: the realm maps ``acr`` level 1 to ``low`` and 2 to ``substantial``
(``acr.loa.map``); a password login is level 1, so its tokens say ``acr: low``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from henvis.registry import load_registry

REALM = "henvis"
REALM_FILE = Path(__file__).resolve().parent.parent / "tools" / "keycloak" / "henvis-realm.json"
DEMO_PASSWORD = "henvis-demo"
WEB_CLIENT = "henvis-web"
PEOPLE_ROLES = ("caseworker", "researcher", "auditor")
MACHINE_ROLES = ("police", "centre")
MACHINE_CENTRES = ("herning", "viborg")
ACR_LOA_MAP = {"low": 1, "substantial": 2}


def secret_of(client_id: str) -> str:
    """The demo secret of a confidential client of the realm."""
    return f"{client_id}-demo-secret"


def _mapper(name: str, kind: str, config: dict[str, str]) -> dict[str, Any]:
    tokens = {"id.token.claim": "true", "access.token.claim": "true", "userinfo.token.claim": "true"}
    return {"name": name, "protocol": "openid-connect", "protocolMapper": kind, "config": tokens | config}


ROLES_MAPPER = _mapper(
    "henvis roles",
    "oidc-usermodel-realm-role-mapper",
    {"claim.name": "henvis_roles", "multivalued": "true", "jsonType.label": "String"},
)


def _audience(audience: str) -> dict[str, Any]:
    return _mapper(
        f"audience {audience}",
        "oidc-audience-mapper",
        {"included.custom.audience": audience, "id.token.claim": "false", "userinfo.token.claim": "false"},
    )


def _web_client() -> dict[str, Any]:
    return {
        "clientId": WEB_CLIENT,
        "name": "henvis web (centre inbox, researchers, auditor)",
        "enabled": True,
        "publicClient": False,
        "clientAuthenticatorType": "client-secret",
        "secret": secret_of(WEB_CLIENT),
        "standardFlowEnabled": True,
        "implicitFlowEnabled": False,
        "directAccessGrantsEnabled": False,
        "serviceAccountsEnabled": False,
        "frontchannelLogout": False,
        # A trailing * is a prefix match in Keycloak: any loopback port, any path.
        "redirectUris": ["http://127.0.0.1:*", "http://localhost:*"],
        "webOrigins": ["+"],
        "attributes": {
            "pkce.code.challenge.method": "S256",
            "post.logout.redirect.uris": "+",  # the same as the redirect URIs
        },
        "protocolMappers": [
            ROLES_MAPPER,
            _mapper("centre groups", "oidc-group-membership-mapper", {"claim.name": "groups", "full.path": "true"}),
        ],
    }


#: A machine client of the tests: its tokens carry no henvis role and expire after this.
ROLELESS_CLIENT = "roleless-short-lived-system"
ROLELESS_TOKEN_SECONDS = 5


def _machine_client(client_id: str, name: str, audience: str, centre: str | None) -> dict[str, Any]:
    mappers = [ROLES_MAPPER, _audience(audience)]
    if centre:
        mappers.append(
            _mapper(
                "henvis centre",
                "oidc-hardcoded-claim-mapper",
                {"claim.name": "henvis_centre", "claim.value": centre, "jsonType.label": "String"},
            )
        )
    return {
        "clientId": client_id,
        "name": name,
        "enabled": True,
        "publicClient": False,
        "clientAuthenticatorType": "client-secret",
        "secret": secret_of(client_id),
        "standardFlowEnabled": False,
        "implicitFlowEnabled": False,
        "directAccessGrantsEnabled": False,
        "serviceAccountsEnabled": True,
        "protocolMappers": mappers,
    }


def _person(username: str, first: str, last: str, role: str, groups: list[str]) -> dict[str, Any]:
    return {
        "username": username,
        "enabled": True,
        # The declarative user profile asks for these at first login when missing.
        "email": f"{username}@henvis.invalid",
        "emailVerified": True,
        "firstName": first,
        "lastName": last,
        "credentials": [{"type": "password", "value": DEMO_PASSWORD, "temporary": False}],
        "realmRoles": [role],
        "groups": groups,
        "requiredActions": [],
    }


def _service_account(client_id: str, role: str) -> dict[str, Any]:
    return {
        "username": f"service-account-{client_id}",
        "enabled": True,
        "serviceAccountClientId": client_id,
        "realmRoles": [role],
    }


def build_realm(slugs: list[str]) -> dict[str, Any]:
    """The realm representation Keycloak imports (``--import-realm``)."""
    people = [_person(f"caseworker-{s}", "Caseworker", s.capitalize(), "caseworker", [f"/centres/{s}"]) for s in slugs]
    people += [
        _person("researcher", "Researcher", "Henvis", "researcher", []),
        _person("auditor", "Auditor", "Henvis", "auditor", []),
    ]
    machines = [_machine_client("police-case-system", "Police case system", "henvis-consent-api", None)]
    machines += [
        _machine_client(f"centre-{s}-system", f"{s.capitalize()} centre case system", "henvis-centre-api", s)
        for s in MACHINE_CENTRES
    ]
    machines.append(
        _machine_client("henvis-inbox-herning", "Herning inbox (key store)", "henvis-consent-api", "herning")
    )
    roleless = _machine_client(ROLELESS_CLIENT, "Test client without a henvis role", "henvis-consent-api", None)
    roleless["protocolMappers"] = [_audience("henvis-consent-api")]
    roleless["attributes"] = {"access.token.lifespan": str(ROLELESS_TOKEN_SECONDS)}
    machines.append(roleless)
    accounts = [_service_account("police-case-system", "police")]
    accounts += [_service_account(f"centre-{s}-system", "centre") for s in MACHINE_CENTRES]
    accounts.append(_service_account("henvis-inbox-herning", "centre"))
    return {
        "realm": REALM,
        "enabled": True,
        "sslRequired": "external",
        "registrationAllowed": False,
        # Caseworkers read Danish: Keycloak's login pages in Danish, English to choose.
        "internationalizationEnabled": True,
        "supportedLocales": ["da", "en"],
        "defaultLocale": "da",
        "bruteForceProtected": True,
        "ssoSessionIdleTimeout": 1800,
        "ssoSessionMaxLifespan": 36000,
        "accessTokenLifespan": 300,
        "attributes": {"acr.loa.map": json.dumps(ACR_LOA_MAP)},
        "roles": {
            "realm": [{"name": role, "description": f"henvis role {role}"} for role in PEOPLE_ROLES + MACHINE_ROLES]
        },
        "groups": [{"name": "centres", "subGroups": [{"name": s} for s in slugs]}],
        "clients": [_web_client(), *machines],
        "users": people + accounts,
    }


def realm_text() -> str:
    slugs = sorted(centre.slug for centre in load_registry().centres)
    return json.dumps(build_realm(slugs), indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m henvis_dev.keycloak_realm", description=__doc__.split("\n")[0])
    parser.add_argument("--check", action="store_true", help="fail when the realm file is not up to date")
    args = parser.parse_args(argv)
    text = realm_text()
    if args.check:
        if not REALM_FILE.exists() or REALM_FILE.read_text(encoding="utf-8") != text:
            print(f"{REALM_FILE} is stale: run `python -m henvis_dev.keycloak_realm`", file=sys.stderr)
            return 1
        return 0
    REALM_FILE.write_text(text, encoding="utf-8")
    print(f"wrote {REALM_FILE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
