"""Realistic fake data and settings for the centre inbox tests (no real person anywhere)."""

from __future__ import annotations

import base64
import json
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from henvis.auth import hash_token
from henvis.schemas.events import PersonalData, ReferralIssued, ReferralWithdrawn, referral_id_for
from henvis.shredding import new_data_key, seal_personal_data

SESSION_SECRET = "test-session-secret-0123456789abcdef"

#: token -> (client name, role)
TOKENS = {
    "tok-herning": ("herning-case-system", "centre:herning"),
    "tok-holstebro": ("holstebro-case-system", "centre:holstebro"),
    "tok-viborg": ("viborg-case-system", "centre:viborg"),
    "tok-auditor": ("audit-office", "auditor"),
    "tok-police": ("police-system", "police"),
}

PEOPLE = [
    (
        "Mette Kjær Sørensen",
        "+4521436587",
        "mette.k.soerensen@example.dk",
        ("Vestergade 14, 1. tv.", "7400", "Herning"),
        "1203851234",
    ),
    ("Jens Peter Østergaard", "+4540112233", None, ("Hjertebjergvej 3", "7500", "Holstebro"), None),
    ("Aisha Rahimi", "+4528765432", "aisha.r@example.dk", None, None),
    ("Søren Bæk Thomsen", "+4531224466", None, ("Industrivej 41", "7430", "Ikast"), "0507794321"),
]


class InMemoryKeys:
    """The key store as the centre sees it (``DataKeys``), in memory: the real one is the consent
    service's, tested in tests/integration/test_consent_keys.py and the pipeline tests."""

    def __init__(self) -> None:
        self.keys: dict[str, tuple[str, bytes]] = {}  # referral id -> (grantee, key)

    def add(self, referral_id: uuid.UUID | str, grantee: str) -> bytes:
        key = new_data_key()
        self.keys[str(referral_id)] = (grantee, key)
        return key

    def fetch(self, centre: str, referral_id: str) -> bytes | None:
        grantee, key = self.keys.get(referral_id, ("", b""))
        return key if grantee == f"centre:{centre}" else None

    def hand_over(self, centre: str, referral_id: str) -> bool:
        if self.fetch(centre, referral_id) is None:
            return False
        self.keys[referral_id] = ("manual-handling", self.keys[referral_id][1])
        return True

    def destroy(self, centre: str, referral_id: str) -> bool:
        if self.fetch(centre, referral_id) is None:
            return False
        del self.keys[referral_id]
        return True


#: The key store every fake referral's data key is in (one per test session; ids are unique).
KEYS = InMemoryKeys()

#: The centre's key-store credentials for a served ``henvis centre serve`` (HENVIS_CENTRE_KEY_STORE_TOKENS).
KEY_STORE_TOKENS = {"herning": "keys-herning", "holstebro": "keys-holstebro"}


@contextmanager
def key_store_over_http(keys: InMemoryKeys = KEYS) -> Iterator[str]:
    """``keys`` behind the consent service's ``GET``/``DELETE /v1/data-keys/{id}`` (the real one is tested in
    tests/integration/test_consent_keys.py), for a centre started as its own process; its URL."""
    centres = {f"Bearer {token}": centre for centre, token in KEY_STORE_TOKENS.items()}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            centre = centres.get(self.headers.get("Authorization", ""))
            referral_id = self.path.removeprefix("/v1/data-keys/")
            key = keys.fetch(centre, referral_id) if centre else None
            body = json.dumps(
                {"referral_id": referral_id, "data_key": base64.b64encode(key).decode()}
                if key
                else {"detail": "No such data key."}
            ).encode()
            self.send_response(200 if key else 404)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_DELETE(self) -> None:
            centre = centres.get(self.headers.get("Authorization", ""))
            referral_id = self.path.removeprefix("/v1/data-keys/")
            destroyed = keys.destroy(centre, referral_id) if centre else False
            self.send_response(204 if destroyed else 404)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *_args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def sealed_personal(
    referral_id: uuid.UUID, centre: str, case_ref: str, person: object, keys: InMemoryKeys = KEYS
) -> str:
    """A referral's personal data sealed under a fresh data key granted to ``centre`` in ``keys``."""
    personal = PersonalData.model_validate({"case_ref": case_ref, "person": person})
    data_key = keys.add(referral_id, f"centre:{centre}")
    return seal_personal_data(data_key, referral_id, personal.model_dump_json().encode())


def api_clients_json() -> str:
    return json.dumps(
        [{"name": name, "role": role, "token_sha256": hash_token(token)} for token, (name, role) in TOKENS.items()]
    )


def auth(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def centre_settings(database_url: str, **overrides):
    from henvis.services.centre.settings import CentreSettings

    values = {
        "database_url": database_url,
        "session_secret": SESSION_SECRET,
        "api_clients": api_clients_json(),
        "centres": "herning,holstebro",
        "relay_interval_seconds": 0.05,
    }
    values.update(overrides)
    return CentreSettings(**values)


def referral_issued(
    centre: str = "herning",
    *,
    person_index: int = 0,
    issued_at: datetime | None = None,
    contact_due_by: date | None = None,
    treatment_due_by: date | None = None,
    charged_on: date | None = None,
    offence: str = "drink_driving",
    case_ref: str = "4100-80261-00123-21",
    keys: InMemoryKeys = KEYS,
) -> ReferralIssued:
    issued_at = issued_at or datetime.now(UTC)
    consent_event_id = uuid.uuid4()
    name, phone, email, address, cpr = PEOPLE[person_index % len(PEOPLE)]
    person = {"full_name": name, "phone": phone, "email": email, "cpr": cpr}
    if address:
        person["postal_address"] = {"street": address[0], "postcode": address[1], "city": address[2]}
    referral_id = referral_id_for(consent_event_id)
    return ReferralIssued(
        event_id=uuid.uuid4(),
        occurred_at=issued_at,
        referral_id=referral_id,
        consent_event_id=consent_event_id,
        centre=centre,
        routed_by="residence",
        offence=offence,
        charged_on=charged_on or (issued_at.date() - timedelta(days=1)),
        municipality_code={"herning": "657", "holstebro": "661"}.get(centre, "657"),
        personal=sealed_personal(referral_id, centre, case_ref, {k: v for k, v in person.items() if v}, keys),
        contact_due_by=contact_due_by or (issued_at.date() + timedelta(days=1)),
        treatment_due_by=treatment_due_by or (issued_at.date() + timedelta(days=14)),
        issued_at=issued_at,
    )


def referral_withdrawn(referral_id: uuid.UUID, centre: str = "herning") -> ReferralWithdrawn:
    return ReferralWithdrawn(
        event_id=uuid.uuid4(),
        occurred_at=datetime.now(UTC),
        referral_id=referral_id,
        centre=centre,
        reason="person_changed_mind",
    )


def personal_strings() -> list[str]:
    """Every personal value the fakes use, to assert none of them leaks."""
    values = ["4100-80261-00123-21"]
    for name, phone, email, address, cpr in PEOPLE:
        values += [name, phone, phone[3:]]
        values += [v for v in (email, cpr) if v]
        if address:
            values.append(address[0])
    return values
