"""The daily digest as a centre's shared mailbox receives it, from a real SMTP server (aiosmtpd)."""

from __future__ import annotations

import email
import email.policy
import os
import socket
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from importlib import resources

import pytest
import yaml
from aiosmtpd.controller import Controller

from henvis.db import migrate
from henvis.deadlines import DANISH_TIME
from henvis.registry import load_registry
from henvis.services.centre import store_intake
from henvis.services.centre.database import make_centre_engine
from henvis.services.centre.digest import send_digests
from tests.centre_fakes import centre_settings, personal_strings, referral_issued

INBOX_URL = "https://henvis.example.dk/centre/inbox"


class Mailbox:
    """An aiosmtpd handler that keeps every message it accepts."""

    def __init__(self) -> None:
        self.messages: list[tuple[list[str], email.message.EmailMessage]] = []

    async def handle_DATA(self, server, session, envelope):
        parsed = email.message_from_bytes(envelope.original_content, policy=email.policy.default)
        self.messages.append((list(envelope.rcpt_tos), parsed))
        return "250 Message accepted for delivery"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="session")
def smtp_server():
    mailbox = Mailbox()
    controller = Controller(mailbox, hostname="127.0.0.1", port=_free_port())
    controller.start()
    yield controller, mailbox
    controller.stop()


@pytest.fixture
def registry_with_mailboxes(tmp_path):
    data = yaml.safe_load(resources.files("henvis").joinpath("data/centres.v1.yaml").read_text())
    for centre in data["centres"]:
        if centre["slug"] == "herning":
            centre["mailbox"] = "rusmiddelcenter@herning.example.dk"
    path = tmp_path / "centres.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True))
    return path


def test_each_centre_gets_counts_and_a_link_and_nothing_about_a_person(
    database_url, smtp_server, registry_with_mailboxes
):
    controller, mailbox = smtp_server
    mailbox.messages.clear()
    settings = centre_settings(
        database_url,
        registry_path=registry_with_mailboxes,
        smtp_host=controller.hostname,
        smtp_port=controller.port,
        smtp_security="none",
        smtp_from="henvis@politi.example.dk",
        inbox_url=INBOX_URL,
    )
    migrate(settings.database_url, "centre")
    engine = make_centre_engine(settings.database_url)
    now = datetime.now(UTC)
    today = now.astimezone(DANISH_TIME).date()
    referrals = [
        # new today, contact due today: new and due soon
        referral_issued("herning", person_index=0, contact_due_by=today, treatment_due_by=today + timedelta(days=14)),
        # issued a week ago, contact missed: overdue
        referral_issued(
            "herning",
            person_index=1,
            issued_at=now - timedelta(days=7),
            contact_due_by=today - timedelta(days=5),
            treatment_due_by=today + timedelta(days=7),
        ),
        # issued two days ago, deadlines far away: counted in none of the three
        referral_issued(
            "herning",
            person_index=2,
            issued_at=now - timedelta(days=2),
            contact_due_by=today + timedelta(days=20),
            treatment_due_by=today + timedelta(days=30),
        ),
        # Holstebro has no mailbox in this registry: no digest, and its referral is not Herning's
        referral_issued("holstebro", person_index=3, contact_due_by=today - timedelta(days=1)),
    ]
    for event in referrals:
        assert store_intake.ingest_issued(engine, event, event.centre) == "stored"

    report = send_digests(settings, load_registry(settings.registry_path), engine, now)
    engine.dispose()

    assert report.sent == ["herning"] and report.no_mailbox == ["holstebro"] and report.failed == []
    ((recipients, message),) = mailbox.messages
    assert recipients == ["rusmiddelcenter@herning.example.dk"]
    assert message["From"] == "henvis@politi.example.dk"
    assert ": 1 nye, 1 med frist snart, 1 over frist" in message["Subject"]
    body = message.get_content()
    assert body.startswith("Rusmiddelcenter Herning: henvisninger")
    assert [line.split(":")[-1].strip() for line in body.splitlines()[2:5]] == ["1", "1", "1"]
    assert INBOX_URL in body
    whole = message.as_string()
    assert not any(value in whole for value in personal_strings())
    assert not any(str(event.referral_id) in whole for event in referrals)


def test_an_unreachable_server_is_a_failure_for_that_centre_not_a_crash(database_url, registry_with_mailboxes):
    settings = centre_settings(
        database_url,
        registry_path=registry_with_mailboxes,
        smtp_host="127.0.0.1",
        smtp_port=_free_port(),  # nothing listens there
        smtp_security="none",
        smtp_from="henvis@politi.example.dk",
        inbox_url=INBOX_URL,
    )
    migrate(settings.database_url, "centre")
    engine = make_centre_engine(settings.database_url)
    report = send_digests(settings, load_registry(settings.registry_path), engine)
    engine.dispose()
    assert report.failed == ["herning"] and report.sent == []


def test_the_command_sends_the_digest_and_names_a_missing_setting(tmp_path, smtp_server, registry_with_mailboxes):
    controller, mailbox = smtp_server
    mailbox.messages.clear()
    env = {
        **os.environ,
        "HENVIS_CENTRE_DATABASE_URL": f"sqlite:///{tmp_path / 'centre.db'}",
        "HENVIS_REGISTRY_PATH": str(registry_with_mailboxes),
        "HENVIS_CENTRE_CENTRES": "herning,holstebro",
        "HENVIS_CENTRE_INBOX_URL": INBOX_URL,
        "HENVIS_CENTRE_SMTP_FROM": "henvis@politi.example.dk",
    }

    def digest(**extra: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "henvis.cli", "centre", "digest"],
            capture_output=True,
            text=True,
            env={**env, **extra},
            timeout=120,
        )

    missing = digest()
    assert missing.returncode == 2
    assert "HENVIS_CENTRE_SMTP_HOST" in missing.stderr and "Traceback" not in missing.stderr

    sent = digest(
        HENVIS_CENTRE_SMTP_HOST=controller.hostname,
        HENVIS_CENTRE_SMTP_PORT=str(controller.port),
        HENVIS_CENTRE_SMTP_SECURITY="none",
    )
    assert sent.returncode == 0, sent.stderr
    assert "digest sent to 1 centre(s); no mailbox in the registry: holstebro; failed: none" in sent.stdout
    ((recipients, message),) = mailbox.messages
    assert recipients == ["rusmiddelcenter@herning.example.dk"]
    assert ": 0 nye, 0 med frist snart, 0 over frist" in message["Subject"]
