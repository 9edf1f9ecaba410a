"""Crypto-shredding: personal data leaves the consent service only encrypted under a data key
of its own referral, and destroying that key makes every copy unreadable at once: in Kafka's
segment files, in their backups, in every database row that kept the ciphertext.

* **Data key**: 32 random bytes per referral.  Personal data (the case number and the person)
  is sealed with XChaCha20-Poly1305 (PyNaCl's ``Aead``), authenticated with the referral id
  as associated data, so a blob moved into another referral's event does not open.
* **Key-encryption keys (KEKs)**: the key store keeps each data key wrapped (sealed) under
  one of the configured KEKs, again bound to its referral id.  Several KEKs may be known at
  once; one wraps new keys.  That is what lets ``henvis consent keys rotate`` re-wrap every
  data key under a new KEK while the service runs.
* **Case pseudonym**: HMAC-SHA256 of the police case number under a secret.  A plain hash of
  a case number could be reversed by hashing every plausible number; without the secret the
  pseudonym cannot.  It keys ``consent.decisions.v2`` and the router's state.

Everything here is a pure computation on the bytes it is given (the nonce is random).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import uuid
from dataclasses import dataclass

from nacl.exceptions import CryptoError
from nacl.secret import Aead
from nacl.utils import random as random_bytes

DATA_KEY_BYTES = Aead.KEY_SIZE
#: The smallest sealed blob: a nonce and an authentication tag around an empty message.
_SEALED_OVERHEAD = Aead.NONCE_SIZE + Aead.MACBYTES
#: Shortest secret accepted for the pseudonym HMAC and as a KEK.
SECRET_BYTES = 32

_PERSONAL_CONTEXT = b"henvis:personal-data:v1:"
_WRAP_CONTEXT = b"henvis:data-key:v1:"
_PSEUDONYM_CONTEXT = b"henvis:case:v1:"


class Undecryptable(ValueError):
    """A blob that does not open: tampered with, truncated, not base64, or sealed under
    another key or for another referral.  The message never contains the blob."""


class UnknownKeyEncryptionKey(LookupError):
    """A data key is wrapped under a KEK this process is not configured with (a rotation
    in progress on another replica, or a KEK removed too early): retry, never "erased"."""


def new_data_key() -> bytes:
    return random_bytes(DATA_KEY_BYTES)


def seal_personal_data(data_key: bytes, referral_id: uuid.UUID, plaintext: bytes) -> str:
    """``plaintext`` sealed for one referral: base64 of nonce and ciphertext."""
    return _seal(data_key, _PERSONAL_CONTEXT + referral_id.bytes, plaintext)


def open_personal_data(data_key: bytes, referral_id: uuid.UUID, sealed: str) -> bytes:
    """The plaintext of :func:`seal_personal_data`; raises :class:`Undecryptable`."""
    return _open(data_key, _PERSONAL_CONTEXT + referral_id.bytes, sealed)


def _seal(key: bytes, context: bytes, plaintext: bytes) -> str:
    return base64.b64encode(bytes(Aead(key).encrypt(plaintext, context))).decode("ascii")


def _open(key: bytes, context: bytes, sealed: str) -> bytes:
    try:
        raw = base64.b64decode(sealed, validate=True)
    except (binascii.Error, ValueError):
        raise Undecryptable("not base64") from None
    if len(raw) < _SEALED_OVERHEAD:
        raise Undecryptable("too short to be sealed (truncated?)")
    try:
        return Aead(key).decrypt(raw, context)
    except CryptoError:
        raise Undecryptable("does not authenticate under this key (tampered, or another key)") from None


def decode_secret(text: str, what: str) -> bytes:
    """A base64 secret of at least :data:`SECRET_BYTES` bytes; ValueError naming ``what``."""
    try:
        raw = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(f"{what} must be base64") from None
    if len(raw) < SECRET_BYTES:
        raise ValueError(f"{what} must hold at least {SECRET_BYTES} random bytes")
    return raw


def new_secret() -> str:
    """A fresh secret for a KEK or the pseudonym key, base64."""
    return base64.b64encode(random_bytes(SECRET_BYTES)).decode("ascii")


@dataclass(frozen=True)
class WrappedKey:
    kek_id: str
    wrapped: str


class KeyEncryptionKeys:
    """The KEKs this process knows, by id; ``current`` wraps new data keys."""

    def __init__(self, keys: dict[str, bytes], current: str):
        if current not in keys:
            raise ValueError(f"the current key-encryption key {current!r} is not among the configured ones")
        if any(len(key) != DATA_KEY_BYTES for key in keys.values()):
            raise ValueError(f"every key-encryption key must be exactly {DATA_KEY_BYTES} bytes")
        self._keys = dict(keys)
        self.current = current

    @classmethod
    def parse(cls, text: str, current: str | None = None) -> KeyEncryptionKeys:
        """``"id:base64,id:base64"``; ``current`` defaults to the first id."""
        keys: dict[str, bytes] = {}
        for entry in (part.strip() for part in text.split(",")):
            kek_id, separator, encoded = entry.partition(":")
            if not separator or not kek_id.strip():
                raise ValueError("key-encryption keys must be written id:base64, separated by commas")
            if kek_id.strip() in keys:
                raise ValueError(f"key-encryption key id {kek_id.strip()!r} is listed twice")
            keys[kek_id.strip()] = decode_secret(encoded, f"key-encryption key {kek_id.strip()!r}")
        return cls(keys, current or next(iter(keys)))

    @property
    def ids(self) -> list[str]:
        return list(self._keys)

    def wrap(self, referral_id: uuid.UUID, data_key: bytes) -> WrappedKey:
        return WrappedKey(self.current, _seal(self._keys[self.current], _WRAP_CONTEXT + referral_id.bytes, data_key))

    def unwrap(self, referral_id: uuid.UUID, wrapped: WrappedKey) -> bytes:
        """The data key; :class:`UnknownKeyEncryptionKey` or :class:`Undecryptable`."""
        kek = self._keys.get(wrapped.kek_id)
        if kek is None:
            raise UnknownKeyEncryptionKey(wrapped.kek_id)
        return _open(kek, _WRAP_CONTEXT + referral_id.bytes, wrapped.wrapped)


class CasePseudonyms:
    """The keyed pseudonym of a police case number (hex HMAC-SHA256)."""

    def __init__(self, secret: bytes):
        if len(secret) < SECRET_BYTES:
            raise ValueError(f"the pseudonym key must hold at least {SECRET_BYTES} bytes")
        self._secret = secret

    def __call__(self, case_ref: str) -> str:
        return hmac.new(self._secret, _PSEUDONYM_CONTEXT + case_ref.encode(), hashlib.sha256).hexdigest()
