"""Crypto-shredding primitives: what opens, what does not, and what a KEK or pseudonym key gives."""

from __future__ import annotations

import base64
import hashlib
import uuid

import pytest

from henvis.shredding import (
    CasePseudonyms,
    KeyEncryptionKeys,
    Undecryptable,
    UnknownKeyEncryptionKey,
    WrappedKey,
    new_data_key,
    new_secret,
    open_personal_data,
    seal_personal_data,
)

REFERRAL = uuid.UUID("5a0f6c0e-3d5e-5b3c-9f3e-0e2a9d1c7b44")
SECRET_TEXT = b'{"case_ref": "4100-80261-00123-21", "person": {"full_name": "Mette Kj\\u00e6r"}}'


def test_sealed_personal_data_opens_with_its_key_and_hides_the_plaintext():
    key = new_data_key()
    sealed = seal_personal_data(key, REFERRAL, SECRET_TEXT)
    assert b"Mette" not in base64.b64decode(sealed) and "4100" not in sealed
    assert open_personal_data(key, REFERRAL, sealed) == SECRET_TEXT
    assert seal_personal_data(key, REFERRAL, SECRET_TEXT) != sealed  # a fresh nonce each time


def tampered(sealed: str) -> str:
    raw = bytearray(base64.b64decode(sealed))
    raw[-5] ^= 0x01
    return base64.b64encode(bytes(raw)).decode()


@pytest.mark.parametrize(
    "spoil",
    [
        pytest.param(tampered, id="tampered"),
        pytest.param(lambda sealed: sealed[:40], id="truncated"),
        pytest.param(lambda sealed: sealed[:-8], id="cut-short"),
        pytest.param(lambda sealed: "not base64 at all!", id="not-base64"),
        pytest.param(lambda sealed: "", id="empty"),
    ],
)
def test_a_spoilt_blob_does_not_open(spoil):
    key = new_data_key()
    with pytest.raises(Undecryptable) as raised:
        open_personal_data(key, REFERRAL, spoil(seal_personal_data(key, REFERRAL, SECRET_TEXT)))
    assert "Mette" not in str(raised.value)


def test_a_blob_opens_neither_under_another_key_nor_for_another_referral():
    key = new_data_key()
    sealed = seal_personal_data(key, REFERRAL, SECRET_TEXT)
    with pytest.raises(Undecryptable):
        open_personal_data(new_data_key(), REFERRAL, sealed)
    with pytest.raises(Undecryptable):
        open_personal_data(key, uuid.uuid4(), sealed)


def test_a_data_key_wrapped_under_one_kek_unwraps_under_the_same_configuration_only():
    old, new = new_secret(), new_secret()
    keks = KeyEncryptionKeys.parse(f"2026b:{new}, 2026a:{old}")
    assert (keks.current, keks.ids) == ("2026b", ["2026b", "2026a"])
    data_key = new_data_key()
    wrapped = keks.wrap(REFERRAL, data_key)
    assert wrapped.kek_id == "2026b" and keks.unwrap(REFERRAL, wrapped) == data_key
    with pytest.raises(Undecryptable):
        keks.unwrap(uuid.uuid4(), wrapped)  # bound to its referral: rows cannot swap keys
    with pytest.raises(UnknownKeyEncryptionKey):
        KeyEncryptionKeys.parse(f"2026a:{old}").unwrap(REFERRAL, wrapped)
    rewrapped = KeyEncryptionKeys.parse(f"2026a:{old},2026b:{new}", current="2026a").wrap(REFERRAL, data_key)
    assert keks.unwrap(REFERRAL, WrappedKey(rewrapped.kek_id, rewrapped.wrapped)) == data_key


@pytest.mark.parametrize(
    "text, current",
    [
        ("no-colon", None),
        ("a:not base64!", None),
        ("a:" + base64.b64encode(b"short").decode(), None),
        (f"a:{new_secret()},a:{new_secret()}", None),
        (f"a:{new_secret()}", "b"),
    ],
)
def test_a_kek_configuration_that_cannot_work_is_refused(text, current):
    with pytest.raises(ValueError):
        KeyEncryptionKeys.parse(text, current)


def test_the_case_pseudonym_is_stable_under_its_secret_and_useless_without_it():
    case_ref = "4100-80261-00123-21"
    secret = base64.b64decode(new_secret())
    pseudonym = CasePseudonyms(secret)(case_ref)
    assert pseudonym == CasePseudonyms(secret)(case_ref)
    assert pseudonym != CasePseudonyms(base64.b64decode(new_secret()))(case_ref)
    assert pseudonym != hashlib.sha256(case_ref.encode()).hexdigest()
    assert case_ref not in pseudonym and len(pseudonym) == 64
    with pytest.raises(ValueError):
        CasePseudonyms(b"too short")
