"""Helpers shared by the consent service's tests: credentials, apps, services, topic reads."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import httpx
from kafka import KafkaConsumer, TopicPartition

from henvis.auth import ApiClient, ClientRegistry, hash_token
from henvis.db import make_engine, migrate
from henvis.kafka import consumer_config
from henvis.registry import load_registry
from henvis.services.consent.domain_keys import DataProtection
from henvis.settings import KafkaSettings
from henvis.shredding import CasePseudonyms, KeyEncryptionKeys
from tests import examples
from tests.helpers import free_port, wait_until

POLICE_TOKEN = "hv_police-test-token-0123456789abcdef0123456789"
RESEARCHER_TOKEN = "hv_researcher-test-token-0123456789abcdef01234"
HERNING_TOKEN = "hv_herning-test-token-0123456789abcdef0123456789"
HOLSTEBRO_TOKEN = "hv_holstebro-test-token-0123456789abcdef01234567"
MANUAL_TOKEN = "hv_manual-test-token-0123456789abcdef0123456789ab"
AUDITOR_TOKEN = "hv_auditor-test-token-0123456789abcdef0123456789"
CLIENTS = [
    {"name": "politi-test", "role": "police", "token_sha256": hash_token(POLICE_TOKEN)},
    {"name": "cfr-test", "role": "researcher", "token_sha256": hash_token(RESEARCHER_TOKEN)},
    {"name": "herning-inbox", "role": "centre:herning", "token_sha256": hash_token(HERNING_TOKEN)},
    {"name": "holstebro-inbox", "role": "centre:holstebro", "token_sha256": hash_token(HOLSTEBRO_TOKEN)},
    {"name": "manual-desk", "role": "manual-handling", "token_sha256": hash_token(MANUAL_TOKEN)},
    {"name": "audit-office", "role": "auditor", "token_sha256": hash_token(AUDITOR_TOKEN)},
]
POLICE = {"Authorization": f"Bearer {POLICE_TOKEN}"}
HERNING = {"Authorization": f"Bearer {HERNING_TOKEN}"}
HOLSTEBRO = {"Authorization": f"Bearer {HOLSTEBRO_TOKEN}"}
MANUAL = {"Authorization": f"Bearer {MANUAL_TOKEN}"}
AUDITOR = {"Authorization": f"Bearer {AUDITOR_TOKEN}"}

#: The test deployment's key-encryption key and case pseudonym key (fixed: subprocesses share them).
KEK_TEXT = "test-kek-1:" + base64.b64encode(b"k" * 32).decode()
PSEUDONYM_KEY = base64.b64encode(b"p" * 32).decode()
#: ``ConsentSettings(**KEY_SETTINGS)``; ``KEY_ENV`` for a subprocess.
KEY_SETTINGS = {"key_encryption_keys": KEK_TEXT, "case_pseudonym_key": PSEUDONYM_KEY}
KEY_ENV = {"HENVIS_CONSENT_KEY_ENCRYPTION_KEYS": KEK_TEXT, "HENVIS_CONSENT_CASE_PSEUDONYM_KEY": PSEUDONYM_KEY}
REPO = Path(__file__).resolve().parent.parent
HENVIS = [sys.executable, "-m", "henvis.cli"]

#: Personal data that must never leave the service anywhere but to Kafka.
SECRET_NAME = "Gunnhild Quistgaard-Ravnsbæk"
SECRET_PHONE = "29384756"
SECRET_EMAIL = "gunnhild.quist@example.dk"
SECRET_CPR = "0707851234"
SECRET_STREET = "Hyldebærvænget 417"
SECRET_CASE = "4100-99117-00042-26"


def client_registry() -> ClientRegistry:
    return ClientRegistry([ApiClient(**entry) for entry in CLIENTS])


def client(name: str) -> ApiClient:
    """The test client called ``name``."""
    return next(ApiClient(**entry) for entry in CLIENTS if entry["name"] == name)


def protection(keks: KeyEncryptionKeys | None = None) -> DataProtection:
    """The test deployment's keys and the packaged registry."""
    return DataProtection(
        keks or KeyEncryptionKeys.parse(KEK_TEXT), CasePseudonyms(base64.b64decode(PSEUDONYM_KEY)), load_registry()
    )


def migrated_engine(database_url: str):
    migrate(database_url, "consent")
    return make_engine(database_url)


def consent_app(database_url: str, **settings_overrides):
    """The real API on a migrated database, with the test credentials."""
    from henvis.services.consent.api import create_consent_app
    from henvis.services.consent.settings import ConsentSettings

    engine = migrated_engine(database_url)
    settings = ConsentSettings(database_url=database_url, **{**KEY_SETTINGS, **settings_overrides})
    return create_consent_app(settings, engine=engine, clients=client_registry())


def secret_person() -> dict:
    return examples.person(
        full_name=SECRET_NAME,
        phone=f"+45 {SECRET_PHONE[:2]} {SECRET_PHONE[2:4]} {SECRET_PHONE[4:6]} {SECRET_PHONE[6:]}",
        email=SECRET_EMAIL,
        cpr=SECRET_CPR,
        postal_address={"street": SECRET_STREET, "postcode": "7400", "city": "Herning"},
    )


def secrets() -> list[str]:
    """Every fragment of personal data a leak would show (including the phone's forms)."""
    return [
        SECRET_NAME,
        "Gunnhild",
        "Quistgaard",
        "Ravnsbæk",
        SECRET_PHONE,
        "+45" + SECRET_PHONE,
        "29 38 47 56",
        SECRET_EMAIL,
        "gunnhild.quist",
        SECRET_CPR,
        "070785-1234",
        SECRET_STREET,
        "Hyldebærvænget",
        SECRET_CASE,
        "99117",
    ]


def service_env(tmp_path: Path, database_url: str, **extra: str) -> dict[str, str]:
    env = {
        **os.environ,
        "HENVIS_RUN_DIR": str(tmp_path),
        "HENVIS_CONSENT_DATABASE_URL": database_url,
        "HENVIS_API_CLIENTS": json.dumps(CLIENTS),
        "HENVIS_LOG_LEVEL": "DEBUG",
        "PYTHONUNBUFFERED": "1",
        **KEY_ENV,
    }
    env.update(extra)
    return env


def start(args: list[str], env: dict[str, str], log_path: Path) -> subprocess.Popen:
    """Start ``henvis <args>`` with stdout and stderr in ``log_path``."""
    with open(log_path, "ab") as out:
        return subprocess.Popen(
            HENVIS + args, env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=REPO
        )


def stop(proc: subprocess.Popen, timeout: float = 20) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def start_api(tmp_path: Path, database_url: str, log_path: Path) -> tuple[subprocess.Popen, str]:
    """``henvis consent serve`` on a free port; returns once ``/readyz`` is 200."""
    port = free_port()
    proc = start(["consent", "serve", "--port", str(port)], service_env(tmp_path, database_url), log_path)
    url = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        assert proc.poll() is None, f"consent serve exited:\n{log_path.read_text()[-3000:]}"
        return httpx.get(f"{url}/readyz", timeout=2).status_code == 200

    wait_until(ready, timeout=60, interval=0.2, message="consent API ready", ignore=(httpx.TransportError,))
    return proc, url


def start_relay(
    tmp_path: Path, database_url: str, kafka: KafkaSettings, log_path: Path, **extra: str
) -> subprocess.Popen:
    env = service_env(
        tmp_path,
        database_url,
        HENVIS_KAFKA_BOOTSTRAP_SERVERS=kafka.bootstrap_servers,
        HENVIS_KAFKA_TOPIC_PREFIX=kafka.topic_prefix,
        HENVIS_KAFKA_PARTITIONS=str(kafka.partitions),
        HENVIS_CONSENT_RELAY_LEASE_SECONDS="30",
        **extra,
    )
    return start(["consent", "relay"], env, log_path)


def log_lines(log_path: Path) -> list[str]:
    return log_path.read_text(encoding="utf-8", errors="replace").splitlines() if log_path.exists() else []


def logged(log_path: Path, event: str) -> bool:
    return any(f'"event": "{event}"' in line for line in log_lines(log_path))


def read_topic(kafka: KafkaSettings, topic: str, expected: int, timeout: float = 90) -> list[tuple[str, dict]]:
    """Every message of ``topic`` from the beginning as (key, value), once ``expected`` arrived.

    Keeps reading briefly after reaching ``expected`` so duplicates would be seen too.
    """
    config = consumer_config(kafka, group_id=f"test-{uuid.uuid4().hex[:8]}", client_id="consent-test-reader")
    config.pop("group_id")
    consumer = KafkaConsumer(**config)
    try:
        partitions = wait_until(lambda: consumer.partitions_for_topic(topic), timeout=30, message=f"{topic} exists")
        assigned = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(assigned)
        consumer.seek_to_beginning(*assigned)
        messages: list[tuple[str, dict]] = []

        def drained() -> bool:
            for records in consumer.poll(timeout_ms=500).values():
                messages.extend((r.key.decode(), json.loads(r.value)) for r in records)
            if len(messages) < expected:
                return False
            end = consumer.end_offsets(assigned)
            return all(consumer.position(tp) >= end[tp] for tp in assigned)

        wait_until(drained, timeout=timeout, interval=0.01, message=f"{expected} messages on {topic}")
        return messages
    finally:
        consumer.close()
