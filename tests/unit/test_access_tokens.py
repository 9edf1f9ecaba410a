"""Machines' OAuth2 access tokens: what the APIs accept and refuse (henvis.access_tokens).

The keys are made here with joserfc and served, with an OpenID discovery document, by a
real HTTP server on 127.0.0.1, so the verifier finds and fetches them as it does from
Keycloak or Entra ID.  Every bad token must be a 401 with ``WWW-Authenticate: Bearer
error="invalid_token"``, its reason in the log, and the token nowhere in the log.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl

import httpx
import pytest
import structlog
from fastapi import Depends, Request
from fastapi.testclient import TestClient
from joserfc import jwt
from joserfc.jwk import ECKey, RSAKey

from henvis.access_tokens import AccessTokenPolicy, AccessTokenVerifier, JwksSource, TokenRefused
from henvis.auth import ApiClient, ClientRegistry, hash_token
from henvis.client_credentials import ClientCredentials, TokenUnavailable
from henvis.http import BearerCredentials, admit_client, create_app
from henvis.settings import AccessTokenSettings

AUDIENCE = "henvis-consent-api"
STATIC_TOKEN = "hv_static-police-token-0123456789"


class ProviderKeys:
    """A JWKS endpoint with discovery, on a real socket; counts the JWKS fetches."""

    def __init__(self) -> None:
        self.signing = RSAKey.generate_key(2048, parameters={"kid": "k1", "use": "sig"})
        self.ec = ECKey.generate_key("P-256", parameters={"kid": "k-ec", "use": "sig"})
        self.published = [self.signing, self.ec]
        #: What else a provider's JWKS may hold: an encryption key, a symmetric key, a kind
        #: joserfc does not know; none of them may spoil the signing keys.
        self.other_entries = [
            dict(RSAKey.generate_key(2048, parameters={"kid": "enc", "use": "enc"}).as_dict(private=False)),
            {"kty": "oct", "kid": "oct", "k": "c2VjcmV0"},
            {"kty": "XYZ", "kid": "odd"},
        ]
        self.jwks_fetches = 0
        self.token_requests: list[dict] = []
        #: when set, a JWKS request is answered only once the test opens this gate
        self.jwks_gate: threading.Event | None = None
        self.jwks_asked = threading.Event()
        keys = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path.endswith("/.well-known/openid-configuration"):
                    body = {
                        "issuer": keys.issuer,
                        "jwks_uri": f"{keys.issuer}/jwks",
                        "token_endpoint": f"{keys.issuer}/token",
                    }
                elif self.path.endswith("/jwks"):
                    keys.jwks_fetches += 1
                    keys.jwks_asked.set()
                    if keys.jwks_gate is not None:
                        keys.jwks_gate.wait(30)
                    body = {"keys": [key.as_dict(private=False) for key in keys.published] + keys.other_entries}
                else:
                    self.send_error(404)
                    return
                data = json.dumps(body).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self) -> None:  # the token endpoint: client credentials, one client
                form = dict(parse_qsl(self.rfile.read(int(self.headers["Content-Length"])).decode()))
                keys.token_requests.append(form)
                if form.get("client_secret") != "herning-secret":
                    self.send_error(401)
                    return
                claims = keys.claims(azp=form["client_id"], henvis_roles=["centre"], henvis_centre="herning")
                data = json.dumps({"access_token": keys.token(**claims), "expires_in": 300}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.issuer = f"http://127.0.0.1:{self.server.server_address[1]}/realms/henvis"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def claims(self, **overrides) -> dict:
        now = int(time.time())
        claims = {
            "iss": self.issuer,
            "aud": AUDIENCE,
            "exp": now + 300,
            "nbf": now - 5,
            "iat": now - 5,
            "azp": "police-case-system",
            "henvis_roles": ["police"],
        }
        claims.update(overrides)
        return {key: value for key, value in claims.items() if value is not None}

    def token(self, key=None, alg: str = "RS256", **overrides) -> str:
        key = key or self.signing
        return jwt.encode({"alg": alg, "kid": key.kid}, self.claims(**overrides), key, algorithms=[alg])


@pytest.fixture(scope="module")
def provider() -> Iterator[ProviderKeys]:
    keys = ProviderKeys()
    yield keys
    keys.server.shutdown()
    keys.server.server_close()


def make_http(provider: ProviderKeys, *, static: list[ApiClient] | None = None, **policy) -> TestClient:
    """A henvis app with a police route and a centre route behind the one bearer scheme."""
    verifier = AccessTokenVerifier(
        AccessTokenPolicy(
            issuer=provider.issuer,
            audience=AUDIENCE,
            other_henvis_audiences=frozenset({"henvis-centre-api"}),
            **policy,
        ),
        JwksSource(provider.issuer, min_refresh_seconds=3600),
    )
    clients = ClientRegistry(static or [], verifier)
    app = create_app(service="token-test", title="t", version="1")

    def police(request: Request, credentials: BearerCredentials) -> ApiClient:
        return admit_client(request, clients, credentials, {"police"})

    def centre(request: Request, credentials: BearerCredentials) -> ApiClient:
        return admit_client(request, clients, credentials, lambda role: role.startswith("centre:"))

    @app.post("/v1/decisions")
    def decide(client: ApiClient = Depends(police)) -> dict:
        return {"client": client.name, "role": client.role}

    @app.get("/v1/centre")
    def centre_route(client: ApiClient = Depends(centre)) -> dict:
        return {"client": client.name, "role": client.role}

    return TestClient(app, raise_server_exceptions=False)


@pytest.fixture(scope="module")
def http(provider: ProviderKeys) -> TestClient:
    return make_http(provider)


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unsigned(header: dict, claims: dict, signature: bytes = b"") -> str:
    """A compact JWS put together by hand: how an attacker builds the tokens below."""
    return f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims).encode())}.{b64(signature)}"


def bad_tokens(provider: ProviderKeys) -> dict[str, tuple[str, str]]:
    """Each bad token with the reason the log must give."""
    now = int(time.time())
    stranger = RSAKey.generate_key(2048, parameters={"kid": "not-published"})
    good = provider.token()
    header, payload, signature = good.split(".")
    tampered_claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    tampered_claims["henvis_roles"] = ["police", "auditor"]
    public_pem = provider.signing.as_pem(private=False)
    hs_header = {"alg": "HS256", "typ": "JWT", "kid": provider.signing.kid}
    hs_input = f"{b64(json.dumps(hs_header).encode())}.{b64(json.dumps(provider.claims()).encode())}"
    hs_signature = hmac.new(public_pem, hs_input.encode(), hashlib.sha256).digest()
    return {
        "expired": (provider.token(exp=now - 120, iat=now - 600, nbf=now - 600), "expired"),
        "not yet valid": (provider.token(nbf=now + 600, iat=now), "not yet valid"),
        "wrong issuer": (provider.token(iss="http://127.0.0.1:1/realms/other"), "wrong issuer"),
        "wrong audience": (provider.token(aud="some-other-app"), "wrong audience"),
        "alg none": (unsigned({"alg": "none", "typ": "JWT"}, provider.claims()), "signature algorithm not allowed"),
        "HS256 with the public key": (f"{hs_input}.{b64(hs_signature)}", "signature algorithm not allowed"),
        "tampered payload": (f"{header}.{b64(json.dumps(tampered_claims).encode())}.{signature}", "bad signature"),
        "unknown kid": (provider.token(key=stranger), "unknown key id"),
        "missing role claim": (provider.token(henvis_roles=None), "missing role claim"),
        "no henvis role": (provider.token(henvis_roles=["offline_access"]), "no henvis role in the role claim"),
        "missing exp": (provider.token(exp=None), "missing claim: exp"),
        "garbage": ("not.a.jwt", "not a signed JWT"),
    }


CASES = [
    "expired",
    "not yet valid",
    "wrong issuer",
    "wrong audience",
    "alg none",
    "HS256 with the public key",
    "tampered payload",
    "unknown kid",
    "missing role claim",
    "no henvis role",
    "missing exp",
    "garbage",
]


@pytest.mark.parametrize("case", CASES)
def test_a_bad_token_is_a_401_with_its_reason_logged_and_the_token_never(
    case: str, provider: ProviderKeys, http: TestClient
):
    token, reason = bad_tokens(provider)[case]
    with structlog.testing.capture_logs() as logs:
        answer = http.post("/v1/decisions", headers={"Authorization": f"Bearer {token}"})
    assert answer.status_code == 401, answer.text
    assert answer.headers["www-authenticate"] == 'Bearer error="invalid_token"'
    assert answer.json() == {"detail": "A valid bearer token is required."}
    assert [entry["reason"] for entry in logs if entry["event"] == "bearer_refused"] == [reason]
    logged = repr(logs)
    for part in token.split("."):
        if len(part) > 8:
            assert part not in logged


def test_a_valid_token_is_admitted_under_its_client_id(provider: ProviderKeys, http: TestClient):
    for key, alg in ((provider.signing, "RS256"), (provider.signing, "PS256"), (provider.ec, "ES256")):
        answer = http.post("/v1/decisions", headers={"Authorization": f"Bearer {provider.token(key=key, alg=alg)}"})
        assert answer.status_code == 200, (alg, answer.text)
        assert answer.json() == {"client": "police-case-system", "role": "police"}


def test_no_token_is_a_401_without_an_error_code(http: TestClient):
    answer = http.post("/v1/decisions")
    assert answer.status_code == 401
    assert answer.headers["www-authenticate"] == "Bearer"


def test_a_valid_token_with_another_role_or_for_another_henvis_api_is_a_403(provider: ProviderKeys, http: TestClient):
    police = provider.token()
    centre = provider.token(azp="centre-herning-system", henvis_roles=["centre"], henvis_centre="herning")
    for_the_centre_api = provider.token(aud="henvis-centre-api")
    assert http.get("/v1/centre", headers={"Authorization": f"Bearer {police}"}).status_code == 403
    assert http.post("/v1/decisions", headers={"Authorization": f"Bearer {centre}"}).status_code == 403
    assert http.post("/v1/decisions", headers={"Authorization": f"Bearer {for_the_centre_api}"}).status_code == 403
    answer = http.get("/v1/centre", headers={"Authorization": f"Bearer {centre}"})
    assert answer.json() == {"client": "centre-herning-system", "role": "centre:herning"}


def test_authenticate_gives_none_for_any_token_it_cannot_admit(provider: ProviderKeys):
    """The researchers' token form asks ``authenticate``: no exception may reach it."""
    clients = ClientRegistry([], AccessTokenVerifier(AccessTokenPolicy(issuer=provider.issuer, audience=AUDIENCE)))
    admitted = clients.authenticate(provider.token())
    assert admitted is not None and (admitted.name, admitted.role) == ("police-case-system", "police")
    other_api = AccessTokenPolicy(issuer=provider.issuer, audience=AUDIENCE, other_henvis_audiences=frozenset({"x"}))
    assert ClientRegistry([], AccessTokenVerifier(other_api)).authenticate(provider.token(aud="x")) is None
    unreachable = AccessTokenVerifier(other_api, JwksSource("http://127.0.0.1:9/realms/henvis"))
    assert ClientRegistry([], unreachable).authenticate(provider.token()) is None
    assert clients.authenticate(provider.token(exp=1)) is None


def test_a_centre_role_needs_its_centre_claim(provider: ProviderKeys, http: TestClient):
    no_centre = provider.token(henvis_roles=["centre"])
    bad_slug = provider.token(henvis_roles=["centre"], henvis_centre="Herning Kommune")
    with structlog.testing.capture_logs() as logs:
        assert http.get("/v1/centre", headers={"Authorization": f"Bearer {no_centre}"}).status_code == 401
        assert http.get("/v1/centre", headers={"Authorization": f"Bearer {bad_slug}"}).status_code == 401
    assert [entry["reason"] for entry in logs if entry["event"] == "bearer_refused"] == [
        "centre role without a centre claim",
        "client id or centre claim not in henvis's form",
    ]


def test_entra_style_app_roles_map_to_henvis_roles(provider: ProviderKeys):
    """Entra ID puts app roles in ``roles`` and the client in ``azp``/``appid``; the scope claim works the same way."""
    entra = make_http(provider, roles_claim="roles", role_map={"Henvis.Police": "police"})
    token = provider.token(
        henvis_roles=None, azp=None, appid="0f8fad5b-d9cb-469f-a165-70867728950e", roles=["Henvis.Police"]
    )
    answer = entra.post("/v1/decisions", headers={"Authorization": f"Bearer {token}"})
    assert answer.json() == {"client": "0f8fad5b-d9cb-469f-a165-70867728950e", "role": "police"}
    scoped = make_http(provider, roles_claim="scope", role_map={"henvis.decisions": "police"})
    token = provider.token(henvis_roles=None, scope="profile henvis.decisions")
    assert scoped.post("/v1/decisions", headers={"Authorization": f"Bearer {token}"}).status_code == 200


def test_a_role_map_may_name_one_centre_outright(provider: ProviderKeys):
    entra = make_http(provider, roles_claim="roles", role_map={"Henvis.Centre.Herning": "centre:herning"})
    token = provider.token(henvis_roles=None, roles=["Henvis.Centre.Herning"])
    answer = entra.get("/v1/centre", headers={"Authorization": f"Bearer {token}"})
    assert answer.json() == {"client": "police-case-system", "role": "centre:herning"}
    with pytest.raises(ValueError, match="roles henvis does not have"):
        AccessTokenPolicy(issuer=provider.issuer, audience=AUDIENCE, role_map={"X": "centre:Herning Kommune"})


def test_henvis_gets_its_own_access_token_by_client_credentials_and_keeps_it(provider: ProviderKeys, http: TestClient):
    """The centre inbox's key-store credential with a provider: one token request, reused until refused."""
    provider.token_requests.clear()
    credentials = ClientCredentials(provider.issuer, "henvis-centre-herning", "herning-secret")
    first = credentials()
    assert credentials() == first
    assert [request["grant_type"] for request in provider.token_requests] == ["client_credentials"]
    answer = http.get("/v1/centre", headers={"Authorization": f"Bearer {first}"})
    assert answer.json() == {"client": "henvis-centre-herning", "role": "centre:herning"}
    credentials.forget()
    credentials()
    assert len(provider.token_requests) == 2
    with structlog.testing.capture_logs() as logs, pytest.raises(TokenUnavailable):
        ClientCredentials(provider.issuer, "henvis-centre-herning", "wrong-secret")()
    assert "wrong-secret" not in repr(logs)
    assert [entry["status"] for entry in logs if entry["event"] == "access_token_unavailable"] == [401]


def test_keys_rotated_at_the_provider_are_fetched_again_but_not_for_every_unknown_kid():
    provider = ProviderKeys()
    try:
        http = make_http(provider)
        assert http.post("/v1/decisions", headers={"Authorization": f"Bearer {provider.token()}"}).status_code == 200
        rotated = RSAKey.generate_key(2048, parameters={"kid": "k2", "use": "sig"})
        provider.published.append(rotated)
        new_key_token = provider.token(key=rotated)
        assert http.post("/v1/decisions", headers={"Authorization": f"Bearer {new_key_token}"}).status_code == 200
        assert provider.jwks_fetches == 2
        stranger = RSAKey.generate_key(2048, parameters={"kid": "made-up"})
        for _ in range(5):
            answer = http.post("/v1/decisions", headers={"Authorization": f"Bearer {provider.token(key=stranger)}"})
            assert answer.status_code == 401
        assert provider.jwks_fetches == 2, "unknown key ids within the refresh interval fetch nothing"
    finally:
        provider.server.shutdown()
        provider.server.server_close()


def test_an_unreachable_provider_is_a_503_not_a_401_and_is_not_asked_on_every_request(provider: ProviderKeys):
    verifier = AccessTokenVerifier(
        AccessTokenPolicy(issuer=provider.issuer, audience=AUDIENCE), JwksSource("http://127.0.0.1:9/realms/henvis")
    )
    app = create_app(service="token-test", title="t", version="1")
    clients = ClientRegistry([], verifier)

    @app.get("/v1/x")
    def route(request: Request, credentials: BearerCredentials) -> dict:
        return {"client": admit_client(request, clients, credentials, {"police"}).name}

    with structlog.testing.capture_logs() as logs:
        answers = [TestClient(app).get("/v1/x", headers={"Authorization": f"Bearer {provider.token()}"}) for _ in "ab"]
    assert [answer.status_code for answer in answers] == [503, 503]
    assert answers[0].headers["retry-after"] == "10"
    assert [entry["event"] for entry in logs].count("jwks_fetch_failed") == 1, "the second request waits for nothing"


def test_static_tokens_are_a_fallback_only_when_configured(provider: ProviderKeys, monkeypatch: pytest.MonkeyPatch):
    static = [ApiClient(name="police-a", role="police", token_sha256=hash_token(STATIC_TOKEN))]
    both = make_http(provider, static=static)
    assert both.post("/v1/decisions", headers={"Authorization": f"Bearer {STATIC_TOKEN}"}).status_code == 200
    assert both.post("/v1/decisions", headers={"Authorization": f"Bearer {provider.token()}"}).status_code == 200

    from henvis.services.consent.settings import ConsentSettings

    monkeypatch.setenv("HENVIS_ACCESS_TOKEN_ISSUER", provider.issuer)
    listed = json.dumps([entry.model_dump() for entry in static])
    tokens_only = ClientRegistry.from_settings(ConsentSettings(api_clients=listed))
    assert tokens_only.authenticate(STATIC_TOKEN) is None, "an issuer turns static tokens off unless asked for"
    fallback = ClientRegistry.from_settings(ConsentSettings(api_clients=listed, api_static_tokens=True))
    assert fallback.authenticate(STATIC_TOKEN) == static[0]
    monkeypatch.delenv("HENVIS_ACCESS_TOKEN_ISSUER")
    assert ClientRegistry.from_settings(ConsentSettings(api_clients=listed)).authenticate(STATIC_TOKEN) == static[0]
    with pytest.raises(ValueError, match="HENVIS_ACCESS_TOKEN_ISSUER"):
        ClientRegistry.from_settings(ConsentSettings(api_clients=listed, api_static_tokens=False))


@pytest.mark.parametrize("algorithms", ["none", "HS256", "RS256,HS256", ""])
def test_symmetric_or_no_algorithms_cannot_be_configured(algorithms: str):
    with pytest.raises(ValueError, match="asymmetric"):
        AccessTokenSettings(algorithms=algorithms)
    with pytest.raises(ValueError, match="asymmetric"):
        AccessTokenPolicy(issuer="http://idp", audience=AUDIENCE, algorithms=tuple(filter(None, algorithms.split(","))))


def test_a_remembered_token_still_expires(provider: ProviderKeys):
    """Tokens that passed are remembered, but never past their exp (plus the leeway)."""
    clock = [time.time()]
    verifier = AccessTokenVerifier(
        AccessTokenPolicy(issuer=provider.issuer, audience=AUDIENCE, leeway_seconds=10),
        JwksSource(provider.issuer),
        cache_size=2,
        now=lambda: clock[0],
    )
    token = provider.token(exp=int(clock[0]) + 60)
    assert verifier.verify(token).roles == ("police",)
    clock[0] += 65
    assert verifier.verify(token).roles == ("police",), "within the leeway"
    clock[0] += 10
    with pytest.raises(TokenRefused, match="expired"):
        verifier.verify(token)
    for index in range(3):  # more tokens than the cache holds: the oldest make room
        assert verifier.verify(provider.token(exp=int(clock[0]) + 60, jti=str(index))).name == "police-case-system"


def test_a_slow_key_fetch_holds_only_the_request_that_needs_it(tmp_path) -> None:
    """The consent API checks credentials on its event loop (for speed).  A token seen for the
    first time may need the provider's keys fetched, up to the fetch timeout: that check runs in
    a worker thread, so the police's other decisions are accepted meanwhile."""
    from henvis.services.consent.api import create_consent_app
    from henvis.services.consent.settings import ConsentSettings
    from tests import examples
    from tests.consent_support import CLIENTS, KEY_SETTINGS, POLICE, migrated_engine
    from tests.helpers import free_port, served

    slow = ProviderKeys()
    slow.jwks_gate = threading.Event()
    url = f"sqlite:///{tmp_path / 'consent.db'}"
    verifier = AccessTokenVerifier(
        AccessTokenPolicy(issuer=slow.issuer, audience=AUDIENCE), JwksSource(slow.issuer, timeout_seconds=30)
    )
    app = create_consent_app(
        ConsentSettings(database_url=url, **KEY_SETTINGS),
        engine=migrated_engine(url),
        clients=ClientRegistry([ApiClient(**entry) for entry in CLIENTS], verifier),
    )
    try:
        with served(app, free_port()) as base, httpx.Client(base_url=base, timeout=20) as http:
            first_sight = threading.Thread(
                target=lambda: results.append(
                    http.post(
                        "/v1/decisions",
                        json=examples.consent_given(),
                        headers={"Authorization": f"Bearer {slow.token()}"},
                    ).status_code
                )
            )
            results: list[int] = []
            first_sight.start()
            assert slow.jwks_asked.wait(20), "the new token's check never asked for the keys"
            # The keys are on their way and will not come until the gate opens: were the check
            # on the event loop, this decision could not be answered (timeout -> test fails).
            meanwhile = http.post("/v1/decisions", json=examples.consent_given(), headers=POLICE)
            assert meanwhile.status_code == 202
            assert results == []  # the first token's request still waits for the keys
            slow.jwks_gate.set()
            first_sight.join(20)
            assert results == [202]
    finally:
        slow.jwks_gate.set()
        slow.server.shutdown()
        slow.server.server_close()
        app.state.engine.dispose()
