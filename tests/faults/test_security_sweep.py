"""Security sweep over the running pipeline: every endpoint refuses the wrong client, no log holds personal data.

The endpoints are not listed by hand: each service's FastAPI app is built in-process and its
routes enumerated (health probes, metrics, API docs, static files and the login pages are
skipped), so an endpoint added later is swept too — and fails the sweep until the table
``ALLOWED_ROLES`` says who may use it. Each endpoint is then called on the real running
service:

* without a credential, and with a token no client has → 401 (a caseworker page: a
  redirect to the login page);
* with every other role's credential → 403 (pages: not 2xx);
* for the centre endpoints naming a referral: with every other centre's credential, and as
  another centre's logged-in caseworker → 404, and the referral is unchanged.

A final test scans every child's log file of the whole session (the fault run included when
it ran first) for every piece of personal data any test submitted.
"""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from fastapi.routing import APIRoute, iter_route_contexts
from starlette.routing import Route

from henvis.auth import ClientRegistry
from henvis.db import make_engine
from henvis.schemas.events import ConsentGiven, Offence, referral_id_for
from henvis.schemas.person import Person, PostalAddress
from tests.centre_fakes import InMemoryKeys
from tests.consent_support import KEY_SETTINGS
from tests.faults.conftest import FaultPipeline
from tests.helpers import wait_until

pytestmark = [pytest.mark.slow, pytest.mark.kafka, pytest.mark.postgres]

#: paths that are public by design (probes, metrics, docs, the login pages, static files)
PUBLIC = {
    "/healthz",
    "/readyz",
    "/metrics",
    "/docs",
    "/docs/oauth2-redirect",
    "/redoc",
    "/openapi.json",
    "/login",
    "/fhir/{centre_key}/metadata",  # the FHIR CapabilityStatement, public as the standard expects
}
ROLES = ["police", "researcher", "auditor", "operator", "centre:herning", "centre:holstebro"]

#: who may use each endpoint; None: a caseworker web page (session cookie, no bearer role)
ALLOWED_ROLES: dict[tuple[str, str, str], set[str] | None] = {
    ("consent", "POST", "/v1/decisions"): {"police"},
    ("consent", "POST", "/v1/withdrawals"): {"police"},
    ("consent", "GET", "/v1/data-keys/{referral_id}"): {"centre:herning", "centre:holstebro", "manual-handling"},
    ("consent", "POST", "/v1/data-keys/{referral_id}/return"): {"centre:herning", "centre:holstebro"},
    ("consent", "DELETE", "/v1/data-keys/{referral_id}"): {"centre:herning", "centre:holstebro", "manual-handling"},
    ("consent", "GET", "/v1/key-access-log"): {"auditor"},
    ("centre", "GET", "/v1/referrals"): {"centre:herning", "centre:holstebro"},
    ("centre", "GET", "/v1/referrals/{referral_id}"): {"centre:herning", "centre:holstebro"},
    ("centre", "POST", "/v1/referrals/{referral_id}/outcomes"): {"centre:herning", "centre:holstebro"},
    ("centre", "GET", "/v1/access-log"): {"auditor"},
    ("centre", "GET", "/"): None,
    ("centre", "POST", "/logout"): None,
    ("centre", "GET", "/indbakke"): None,
    ("centre", "GET", "/henvisning/{referral_id}"): None,
    ("centre", "POST", "/henvisning/{referral_id}/udfald"): None,
    **{
        ("centre", method, f"/fhir/{{centre_key}}/{resource}"): {"centre:herning", "centre:holstebro"}
        for method, resource in [
            ("GET", "Task"),
            ("GET", "Task/{referral_id}"),
            ("PATCH", "Task/{referral_id}"),
            ("PUT", "Task/{referral_id}"),
            ("GET", "ServiceRequest/{referral_id}"),
            ("GET", "Consent/{referral_id}"),
            ("GET", "Patient/{referral_id}"),
            ("GET", "Organization/{organization_id}"),
        ]
    },
    ("stats", "GET", "/v1/funnel"): {"researcher"},
    ("stats", "GET", "/v1/funnel/monthly"): {"researcher"},
    ("stats", "GET", "/v1/funnel/by-municipality"): {"researcher"},
    ("stats", "GET", "/"): {"researcher"},
    ("stats", "POST", "/logout"): None,
}


# ---------------------------------------------------------------------- enumeration


def service_routes(tmp_path) -> list[tuple[str, str, str, bool]]:
    """(service, method, path, in_openapi) of every route of every service's app."""
    from henvis.services.centre.api import build_app
    from henvis.services.centre.settings import CentreSettings
    from henvis.services.consent.api import create_consent_app
    from henvis.services.consent.settings import ConsentSettings
    from henvis.services.stats.api import create_stats_app
    from henvis.services.stats.settings import StatsSettings

    apps = {
        "consent": create_consent_app(
            ConsentSettings(database_url="sqlite://", **KEY_SETTINGS),
            engine=make_engine("sqlite://"),
            clients=ClientRegistry([]),
        ),
        "centre": build_app(
            CentreSettings(database_url=f"sqlite:///{tmp_path / 'centre.db'}", session_secret="s" * 40),
            local_only=True,
            keys=InMemoryKeys(),
        ),
        "stats": create_stats_app(StatsSettings(database_url=f"sqlite:///{tmp_path / 'stats.db'}")),
    }
    routes = []
    for service, app in apps.items():
        # FastAPI >= 0.137 keeps an included router as one node of app.routes: expand it.
        for context in iter_route_contexts(app.routes):
            route = context.original_route
            if not isinstance(route, Route) or context.path in PUBLIC:
                continue
            for method in sorted((context.methods or set()) - {"HEAD", "OPTIONS"}):
                in_openapi = isinstance(route, APIRoute) and route.include_in_schema
                routes.append((service, method, context.path, in_openapi))
    return routes


@pytest.fixture(scope="module")
def routes(tmp_path_factory) -> list[tuple[str, str, str, bool]]:
    return service_routes(tmp_path_factory.mktemp("routes"))


# ---------------------------------------------------------------------- a referral to protect


def _consent_for(pipeline: FaultPipeline, code: str, tag: str) -> ConsentGiven:
    now = datetime.now(UTC)
    person = Person(
        full_name=f"Bodil Kjærsgaard-{tag.capitalize()}",
        phone=f"+4529{uuid.uuid4().int % 10**6:06d}",
        email=f"bodil.sweep.{tag}@eksempel.dk",
        cpr="0101801234",
        postal_address=PostalAddress(
            street=f"Fjordvej {uuid.uuid4().int % 900 + 100}Q", postcode="7400", city="Herning"
        ),
    )
    pipeline.remember_personal_data(
        [
            person.full_name,
            person.phone,
            person.phone[3:],
            person.email,
            person.cpr,
            person.postal_address.street,
            f"SWEEP-{tag}",
        ]
    )
    return ConsentGiven(
        event_id=uuid.uuid4(),
        occurred_at=now,
        case_ref=f"SWEEP-{tag}",
        offence=Offence.DRINK_DRIVING,
        charged_on=now.date() - timedelta(days=1),
        municipality_code=code,
        person=person,
        consent_text_version="samtykke-2020-03",
        recorded_by="POL1234",
    )


@pytest.fixture(scope="module")
def herning_referral(fault_pipeline: FaultPipeline) -> str:
    """A referral of the Herning centre, delivered through the pipeline."""
    tag = "".join(chr(ord("a") + int(digit, 16)) for digit in uuid.uuid4().hex[:8])  # a name holds letters only
    consent = _consent_for(fault_pipeline, "657", tag)
    response = fault_pipeline.post_decision(consent.to_bytes())
    assert response.status_code == 202, response.text
    referral_id = str(referral_id_for(consent.event_id))
    headers = {"Authorization": f"Bearer {fault_pipeline.token('centre:herning')}"}
    wait_until(
        lambda: (
            httpx.get(
                f"{fault_pipeline.url('centre')}/v1/referrals/{referral_id}", headers=headers, timeout=5
            ).status_code
            == 200
        ),
        timeout=120,
        interval=0.3,
        message="the sweep's referral never reached the Herning inbox",
        ignore=(httpx.HTTPError,),
    )
    return referral_id


# ---------------------------------------------------------------------- calling an endpoint


def call(
    pipeline: FaultPipeline,
    service: str,
    method: str,
    path: str,
    referral_id: str,
    token: str | None = None,
    client: httpx.Client | None = None,
    form: dict | None = None,
) -> httpx.Response:
    # FHIR paths name the Herning centre (the referral's owner) and its Organization.
    filled = path.replace("{referral_id}", referral_id).replace("{centre_key}", "herning")
    url = pipeline.url(service) + filled.replace("{organization_id}", "herning")
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    requester = client or httpx
    if method in ("GET", "DELETE"):
        return requester.request(method, url, headers=headers, timeout=10, follow_redirects=False)
    if form is not None:
        return requester.post(url, headers=headers, data=form, timeout=10, follow_redirects=False)
    body = b'{"outcome": "contact_attempted"}' if path.endswith("/outcomes") else b"{}"
    return requester.request(
        method,
        url,
        headers={**headers, "Content-Type": "application/json"},
        content=body,
        timeout=10,
        follow_redirects=False,
    )


def refused_page(response: httpx.Response) -> bool:
    """A page refuses by not serving it: an error status, or a redirect that is not into the app."""
    if response.is_redirect:
        return response.headers["location"] in ("/login", "/")
    return response.status_code >= 400


# ---------------------------------------------------------------------- tests


def test_the_sweep_knows_who_may_use_every_endpoint(routes):
    found = {(service, method, path) for service, method, path, _ in routes}
    assert found - set(ALLOWED_ROLES) == set(), "an endpoint without an access rule: add it to ALLOWED_ROLES"
    assert len(found) >= 14


def test_every_endpoint_refuses_a_client_without_a_valid_credential(fault_pipeline, routes, herning_referral):
    wrong = []
    for service, method, path, in_openapi in routes:
        for token in (None, "not-a-token-anyone-has"):
            response = call(fault_pipeline, service, method, path, herning_referral, token)
            api = ALLOWED_ROLES[(service, method, path)] is not None and in_openapi
            ok = response.status_code == 401 if api else refused_page(response)
            if not ok:
                wrong.append(
                    (service, method, path, "no token" if token is None else "unknown token", response.status_code)
                )
    assert wrong == []


def test_every_endpoint_refuses_every_other_roles_credential(fault_pipeline, routes, herning_referral):
    wrong = []
    for service, method, path, in_openapi in routes:
        allowed = ALLOWED_ROLES[(service, method, path)]
        for role in ROLES:
            if allowed is not None and role in allowed:
                continue
            response = call(fault_pipeline, service, method, path, herning_referral, fault_pipeline.token(role))
            ok = response.status_code == 403 if (allowed is not None and in_openapi) else refused_page(response)
            if not ok or response.is_success:
                wrong.append((service, method, path, role, response.status_code))
    assert wrong == []


def test_another_centres_credential_gets_404_for_a_referral_and_cannot_change_it(
    fault_pipeline, routes, herning_referral
):
    owner = {"Authorization": f"Bearer {fault_pipeline.token('centre:herning')}"}
    before = httpx.get(f"{fault_pipeline.url('centre')}/v1/referrals/{herning_referral}", headers=owner, timeout=10)
    assert before.status_code == 200 and before.json()["person"]  # the owner sees it, with the person to call
    others = [slug for slug in fault_pipeline.credentials.centre_tokens() if slug != "herning"]
    wrong = []
    for slug in others:
        token = fault_pipeline.token(f"centre:{slug}")
        for service, method, path, _ in routes:
            names_referral = path.startswith("/v1/referrals/{referral_id}") or (
                path.startswith("/fhir/") and "{referral_id}" in path
            )
            if service == "centre" and names_referral:
                response = call(fault_pipeline, service, method, path, herning_referral, token)
                if response.status_code != 404:
                    wrong.append((slug, method, path, response.status_code))
        listing = httpx.get(
            f"{fault_pipeline.url('centre')}/v1/referrals",
            params={"status": "all"},
            headers={"Authorization": f"Bearer {token}"},
            timeout=10,
        )
        if herning_referral in listing.text:
            wrong.append((slug, "GET", "/v1/referrals", "lists Herning's referral"))
    assert wrong == []
    after = httpx.get(
        f"{fault_pipeline.url('centre')}/v1/referrals/{herning_referral}", headers=owner, timeout=10
    ).json()
    assert after["outcomes"] == before.json()["outcomes"] == []  # no other centre recorded an outcome on it


def _log_in(pipeline: FaultPipeline, slug: str) -> tuple[httpx.Client, str]:
    client = httpx.Client(base_url=pipeline.url("centre"), timeout=10)
    page = client.get("/login")
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
    answer = client.post(
        "/login",
        data={"username": slug, "password": pipeline.credentials.caseworker_passwords[slug], "csrf_token": csrf},
    )
    assert answer.status_code == 303 and answer.headers["location"] == "/indbakke"
    inbox = client.get("/indbakke")
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', inbox.text).group(1)
    return client, csrf


def test_another_centres_caseworker_gets_404_for_a_referral_page_and_cannot_record_on_it(
    fault_pipeline, herning_referral
):
    owner, _ = _log_in(fault_pipeline, "herning")
    assert owner.get(f"/henvisning/{herning_referral}").status_code == 200  # the owner's caseworker sees it
    owner.close()
    client, csrf = _log_in(fault_pipeline, "holstebro")
    try:
        page = client.get(f"/henvisning/{herning_referral}")
        recorded = client.post(
            f"/henvisning/{herning_referral}/udfald", data={"outcome": "contact_attempted", "csrf_token": csrf}
        )
        inbox = client.get("/indbakke", params={"fane": "all"})
    finally:
        client.close()
    assert (page.status_code, recorded.status_code) == (404, 404)
    assert herning_referral not in inbox.text
    assert "Bodil" not in page.text + recorded.text + inbox.text


# ---------------------------------------------------------------------- the log scan (runs last)


def leaked(values: list[str], text: str) -> list[str]:
    """The values that occur in ``text``, found by tokenising the text once (a scan per value
    over megabytes of logs would take minutes).

    Digits-only values (a phone without +45, a CPR) must stand alone, not inside a longer
    number or a decimal; ``+45…`` phones are found by their digits; names and streets as runs
    of words; case_refs and anything else as a whole token.
    """
    numbers = set(re.findall(r"(?<![\d.])\d+(?!\d)", text))
    emails = set(re.findall(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+", text))
    tokens = set(re.findall(r"[\w-]+", text))
    words = re.findall(r"\w+(?:['-]\w+)*", text)
    phrases = [value for value in values if " " in value]
    first_words = {value.split()[0] for value in phrases}
    lengths = {len(value.split()) for value in phrases}
    runs = {
        " ".join(words[index : index + length])
        for index, word in enumerate(words)
        if word in first_words
        for length in lengths
    }
    found = []
    for value in values:
        if value.startswith("+") and value[1:].isdigit():
            hit = value[1:] in numbers
        elif value.isdigit():
            hit = value in numbers
        elif "@" in value:
            hit = value in emails
        elif " " in value:
            hit = value in runs
        else:
            hit = value in tokens
        if hit:
            found.append(value)
    return found


def test_the_log_scan_finds_personal_data_wherever_a_log_line_puts_it():
    values = [
        "+4529123456",
        "29123456",
        "0101801234",
        "bodil.x@eksempel.dk",
        "Bodil Kjærsgaard-Xy",
        "Fjordvej 12Q",
        "SWEEP-abc",
    ]
    line = (
        '{"event": "oops", "to": "+4529123456", "n": 29123456, "cpr": "0101801234", "mail": "<bodil.x@eksempel.dk>", '
        '"who": "Bodil Kjærsgaard-Xy.", "where": "Fjordvej 12Q, 7400", "path": "/v1/cases/SWEEP-abc"}'
    )
    assert leaked(values, line) == values
    harmless = '{"duration_ms": 3.29123456, "offset": 1290123456, "id": "70101801234", "who": "Bodil Kjærsgaard"}'
    assert leaked(values, harmless) == []


def test_no_log_of_the_whole_run_holds_any_personal_data_submitted(fault_pipeline, herning_referral):
    logs = sorted((fault_pipeline.run_dir / "logs").glob("*.log"))
    text = "\n".join(path.read_text(encoding="utf-8", errors="replace") for path in logs)
    assert {path.stem for path in logs} >= {
        "consent-api",
        "consent-relay",
        "router",
        "centre-worker",
        "centre-api",
        "stats-worker",
        "stats-api",
    }
    assert "http_request" in text  # the services did log what they did
    submitted = sorted(fault_pipeline.submitted_personal_data)
    assert len(submitted) >= 7
    found = leaked(submitted, text)
    assert found == [], f"{len(found)} of {len(submitted)} submitted personal values appear in the logs"
