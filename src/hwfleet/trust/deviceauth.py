"""Seed 004's "password the first time, then only the key", between a client and a device.

A client (a second controller, an operator's tool) reaches the device's admin
listener over TLS and proves a key by signing a challenge:

1. ``device.auth.hello`` → ``{"uuid", "fingerprint", "nonce"}``: the device's key
   fingerprint (what ``hwfleet keys list`` shows, and what the listener's
   certificate carries) and 32 fresh random bytes, base64.
2. ``device.auth.login`` ``{"public_key": PEM, "signature": base64, "password"?,
   "label"?}``. The signature covers :func:`challenge` — the nonce, the
   fingerprint of the TLS certificate *the client saw* and the client's own key
   fingerprint — so it is good for this connection to this device only: a
   relay presents another certificate and the device refuses the signature.
   A key on the device's trust list is admitted; otherwise the device password
   admits it and adds the key to the list, so the next connection needs only
   the key.

The device identifies a client by its key's fingerprint (``SHA256:…`` of the
SubjectPublicKeyInfo), the access id ``device.trust.*`` lists and removes.
Accepted keys are those of enrollment: Ed25519, ECDSA P-256/P-384, RSA ≥ 3072.
"""

from __future__ import annotations

import base64
import binascii
from typing import TYPE_CHECKING

from hwfleet.errors import TrustError

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.types import (
        PrivateKeyTypes,
        PublicKeyTypes,
    )

AUTH_HELLO = "device.auth.hello"
AUTH_LOGIN = "device.auth.login"
NONCE_BYTES = 32
MAX_PUBLIC_KEY_PEM = 8 * 1024
_DOMAIN = b"hwfleet device auth v1\0"


class AuthError(TrustError, ValueError):
    """A login that proves nothing: unreadable key or signature, refused key type, bad signature."""


def challenge(nonce: bytes, server_cert_fingerprint: str, client_fingerprint: str) -> bytes:
    """The bytes a client signs: bound to the device's nonce, its certificate and the key."""
    return b"\0".join(
        (_DOMAIN, nonce, server_cert_fingerprint.encode("ascii"), client_fingerprint.encode())
    )


def sign(key: PrivateKeyTypes, message: bytes) -> str:
    """Base64 signature of ``message`` with a client key of an accepted type."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa

    # Ed25519 signs the message itself; ECDSA and RSA a SHA-256 digest of it.
    if isinstance(key, ed25519.Ed25519PrivateKey):
        raw = key.sign(message)
    elif isinstance(key, ec.EllipticCurvePrivateKey):
        raw = key.sign(message, ec.ECDSA(hashes.SHA256()))
    elif isinstance(key, rsa.RSAPrivateKey):
        raw = key.sign(message, padding.PKCS1v15(), hashes.SHA256())
    else:
        raise AuthError(f"a {type(key).__name__} cannot sign a device login")
    return base64.b64encode(raw).decode("ascii")


def public_key_pem(key: PrivateKeyTypes) -> str:
    from cryptography.hazmat.primitives import serialization

    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode("ascii")
    )


def load_public_key(pem: str) -> tuple[PublicKeyTypes, str]:
    """The client's key and its access id; :class:`AuthError` names what is wrong."""
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives import serialization

    from hwfleet.trust.csr import CsrError, check_key_policy, spki_fingerprint

    if len(pem) > MAX_PUBLIC_KEY_PEM:
        raise AuthError(f"public_key: longer than {MAX_PUBLIC_KEY_PEM} characters")
    try:
        key = serialization.load_pem_public_key(pem.encode("ascii"))
    except (ValueError, TypeError, UnicodeEncodeError, UnsupportedAlgorithm):
        raise AuthError("public_key: not a readable PEM public key") from None
    try:
        check_key_policy(key)
    except CsrError as exc:
        raise AuthError(f"public_key: {exc}") from None
    return key, spki_fingerprint(key)


def verify(key: PublicKeyTypes, signature: str, message: bytes) -> None:
    """Raise :class:`AuthError` unless ``signature`` (base64) signs ``message`` with ``key``."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa

    try:
        raw = base64.b64decode(signature.encode("ascii"), validate=True)
    except (ValueError, binascii.Error, UnicodeEncodeError):
        raise AuthError("signature: not base64") from None
    try:
        if isinstance(key, ed25519.Ed25519PublicKey):
            key.verify(raw, message)
        elif isinstance(key, ec.EllipticCurvePublicKey):
            key.verify(raw, message, ec.ECDSA(hashes.SHA256()))
        elif isinstance(key, rsa.RSAPublicKey):
            key.verify(raw, message, padding.PKCS1v15(), hashes.SHA256())
        else:
            raise AuthError("public_key: unsupported key type")
    except InvalidSignature:
        raise AuthError(
            "signature: does not verify for this key, this device's certificate and nonce"
        ) from None
