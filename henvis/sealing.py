"""Sealing for the manual-handling role: the only way personal data reaches ``henvis.manual.v1``
(the router seals a case it cannot route, the centre a referral returned as not its own).

A NaCl sealed box (Curve25519 + XSalsa20-Poly1305) encrypts the source event with the
manual-handling role's public key; only the holder of the private key can open it, and the
router itself cannot read what it sealed.  Without a configured key the router drops the
payload instead (the manual event then carries ids, reason, municipality and offence only).
"""

from __future__ import annotations

import base64

from nacl.public import PrivateKey, PublicKey, SealedBox


class Sealer:
    def __init__(self, public_key_b64: str | None):
        self._box = SealedBox(PublicKey(base64.b64decode(public_key_b64))) if public_key_b64 else None

    @property
    def enabled(self) -> bool:
        return self._box is not None

    def __call__(self, payload: bytes) -> str | None:
        if self._box is None:
            return None
        return base64.b64encode(self._box.encrypt(payload)).decode("ascii")


def generate_keypair() -> tuple[str, str]:
    """(private, public) keys in base64, for ``henvis router keygen``."""
    private = PrivateKey.generate()
    return (
        base64.b64encode(bytes(private)).decode("ascii"),
        base64.b64encode(bytes(private.public_key)).decode("ascii"),
    )


def unseal(private_key_b64: str, sealed_b64: str) -> bytes:
    """Open a sealed payload (manual-handling tooling and tests)."""
    return SealedBox(PrivateKey(base64.b64decode(private_key_b64))).decrypt(base64.b64decode(sealed_b64))
