"""Ed25519 keys for discovery: fingerprints, signing and verification of raw bytes.

Devices sign replies and announcements with their device key once enrolled; browsers
verify them against the key enrollment recorded for that uuid (or, for devices not yet
enrolled, against the key the packet carries, which proves only self-consistency).
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

from hwfleet.trust.fingerprints import of_der

# cryptography is imported where it is used: an agent that is never asked to sign or
# verify (an idle one) stays inside its memory budget.
if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

SIGNATURE_SIZE = 64
PUBLIC_KEY_SIZE = 32
#: DER SubjectPublicKeyInfo of an Ed25519 key is this fixed prefix plus the 32 raw bytes.
_ED25519_SPKI_PREFIX = bytes.fromhex("302a300506032b6570032100")


def public_raw(key: Ed25519PrivateKey) -> bytes:
    """The 32 raw bytes of a private key's public half."""
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    return key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


@functools.lru_cache(maxsize=4096)  # the browser sees the same few keys in every packet
def fingerprint(public: bytes) -> str:
    """The key's fingerprint in the one hwfleet format (``SHA256:aa:bb:…`` of the SPKI DER).

    It equals what enrollment shows for the same key (hwfleet.trust.fingerprints).
    """
    return of_der(_ED25519_SPKI_PREFIX + public)


def raw_from_pem(pem: str | bytes) -> bytes | None:
    """The raw Ed25519 public key in a PEM public key, or None for other key types."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
    from cryptography.hazmat.primitives.serialization import (
        Encoding,
        PublicFormat,
        load_pem_public_key,
    )

    key = load_pem_public_key(pem.encode() if isinstance(pem, str) else pem)
    if not isinstance(key, Ed25519PublicKey):
        return None
    return key.public_bytes(Encoding.Raw, PublicFormat.Raw)


def sign(key: Ed25519PrivateKey, data: bytes) -> bytes:
    return key.sign(data)


def verify(public: bytes, signature: bytes, data: bytes) -> bool:
    """True only if ``signature`` is ``public``'s signature over ``data``; never raises."""
    if len(public) != PUBLIC_KEY_SIZE or len(signature) != SIGNATURE_SIZE:
        return False
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    try:
        Ed25519PublicKey.from_public_bytes(public).verify(signature, data)
    except (InvalidSignature, ValueError):
        return False
    return True
