"""Rotating the key-encryption key while consents arrive, keys are released and cases are
withdrawn: no referral becomes unreadable, none is lost, no destroyed key comes back.

The operators' procedure (docs/operators-guide.md): every replica learns the new KEK (it
unwraps with either), the new one becomes current (new keys are wrapped with it), then
``henvis consent keys rotate`` re-wraps the rest, and the old KEK is removed.
"""

from __future__ import annotations

import threading
import uuid

import pytest
from sqlalchemy import select

from henvis.schemas.events import ConsentWithdrawn, parse_decision
from henvis.services.consent import domain, store, store_keys
from henvis.services.consent.models import data_keys
from henvis.shredding import KeyEncryptionKeys, new_secret
from tests import examples
from tests.consent_support import client, migrated_engine, protection

OLD = f"old:{new_secret()}"
NEW = f"new:{new_secret()}"
HERNING_INBOX = client("herning-inbox")


@pytest.fixture
def engine(database_url: str):
    engine = migrated_engine(database_url)
    yield engine
    engine.dispose()


def accept_consent(engine, keks: KeyEncryptionKeys, case_ref: str) -> str:
    event = parse_decision(examples.consent_given(case_ref=case_ref, municipality_code="657"))
    acceptance = store.accept(engine, event, "politi-test", protection(keks))
    assert acceptance.new is not None
    return acceptance.new.data_key.referral_id


def withdraw(engine, keks: KeyEncryptionKeys, case_ref: str) -> None:
    withdrawal = ConsentWithdrawn.model_validate(examples.consent_withdrawn(case_ref=case_ref))
    withdrawn, errors = domain.resolve_withdrawal(withdrawal, None, protection(keks).pseudonyms)
    assert not errors
    store.accept(engine, withdrawal, "politi-test", protection(keks), withdrawn)


def test_rotation_under_load_loses_no_referral_and_revives_no_destroyed_key(engine):
    only_old = KeyEncryptionKeys.parse(OLD)
    before = {accept_consent(engine, only_old, f"4100-ROT-{n}"): f"4100-ROT-{n}" for n in range(120)}
    keys_before = {
        referral: store_keys.release(engine, uuid.UUID(referral), HERNING_INBOX, only_old) for referral in before
    }
    both = KeyEncryptionKeys.parse(f"{NEW},{OLD}")  # step 2: every replica has both, the new one current
    to_withdraw = sorted(before.items())[:20]
    arrived: list[str] = []
    failures: list[str] = []
    stop = threading.Event()

    def police() -> None:
        for n in range(60):
            arrived.append(accept_consent(engine, both, f"4100-ROT-NEW-{n}"))
        for _referral, case_ref in to_withdraw:
            withdraw(engine, both, case_ref)

    def centre() -> None:
        while not stop.is_set():
            for referral, case_ref in before.items():
                if any(case_ref == withdrawn for _, withdrawn in to_withdraw):
                    continue
                if store_keys.release(engine, uuid.UUID(referral), HERNING_INBOX, both) != keys_before[referral]:
                    failures.append(referral)

    threads = [threading.Thread(target=police), threading.Thread(target=centre)]
    for thread in threads:
        thread.start()
    first = store_keys.rotate(engine, both, batch=25)
    threads[0].join()
    stop.set()
    threads[1].join()
    second = store_keys.rotate(engine, both)  # whatever the first pass met half-written

    assert failures == [], "a key read during the rotation was not the referral's key"
    assert first.complete and second.complete
    assert first.rewrapped + second.rewrapped + first.changed_meanwhile + second.changed_meanwhile >= 100
    with engine.connect() as conn:
        rows = {row.referral_id: row for row in conn.execute(select(data_keys))}
    assert set(rows) == set(before) | set(arrived)  # none lost
    withdrawn = {referral for referral, _ in to_withdraw}
    assert all(rows[referral].wrapped_key is None for referral in withdrawn)  # none revived
    assert {row.kek_id for referral, row in rows.items() if referral not in withdrawn} == {"new"}
    only_new = KeyEncryptionKeys.parse(NEW)  # step 4: the old KEK removed
    for referral in set(before) - withdrawn:
        assert store_keys.release(engine, uuid.UUID(referral), HERNING_INBOX, only_new) == keys_before[referral]
    for referral in arrived:
        assert len(store_keys.release(engine, uuid.UUID(referral), HERNING_INBOX, only_new)) == 32


def test_rotation_reports_keys_under_a_kek_it_does_not_know(engine):
    accept_consent(engine, KeyEncryptionKeys.parse(OLD), "4100-ROT-LOST")
    rotation = store_keys.rotate(engine, KeyEncryptionKeys.parse(NEW))
    assert not rotation.complete and rotation.not_rewrapped == {"old": 1}
