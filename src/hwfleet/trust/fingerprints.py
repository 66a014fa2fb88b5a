"""Fingerprints: the one format hwfleet shows for keys and certificates everywhere.

A fingerprint is the SHA-256 digest written as ``SHA256:`` followed by
lower-case hex pairs joined by colons (``SHA256:3f:a2:…``), the format
``openssl x509 -fingerprint -sha256`` prints (in lower case), so an operator
can compare it with what OpenSSL shows on either machine. The controller CA's
fingerprint is the digest of its certificate (DER); an agent key's fingerprint
is the digest of its public key (SubjectPublicKeyInfo DER), so it stays the
same when the certificate is re-issued.

This module imports only the standard library: an enrolled agent computes
fingerprints without loading ``cryptography``.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import ssl

from hwfleet.errors import TrustError

PREFIX = "SHA256:"
#: Key ids shown to operators: the first 16 hex digits of the fingerprint.
KEY_ID_LENGTH = 16

_HEX = re.compile(r"[0-9a-f]{64}")


class BadFingerprintError(TrustError, ValueError):
    """A fingerprint an operator typed is not a SHA-256 fingerprint."""


def format_digest(digest: bytes) -> str:
    """``SHA256:aa:bb:…`` for a 32-byte digest."""
    if len(digest) != 32:
        raise ValueError(f"a SHA-256 digest has 32 bytes, not {len(digest)}")
    return PREFIX + digest.hex(":")


def of_der(der: bytes) -> str:
    """Fingerprint of DER bytes (a certificate, or a SubjectPublicKeyInfo)."""
    return format_digest(hashlib.sha256(der).digest())


def of_cert_pem(pem: str) -> str:
    """Fingerprint of the first certificate in ``pem`` (digest of its DER)."""
    try:
        der = ssl.PEM_cert_to_DER_cert(pem.strip() + "\n")
    except ValueError as exc:
        raise ValueError(f"not a PEM certificate: {exc}") from None
    return of_der(der)


def parse(text: str) -> str:
    """Normalise an operator-typed fingerprint into the canonical form.

    Accepts the canonical form, upper case, and bare hex with or without
    colons (what other tools print), so a pasted value just works.
    """
    value = text.strip().lower()
    if value.startswith(PREFIX.lower()):
        value = value[len(PREFIX) :]
    compact = value.replace(":", "").replace(" ", "")
    if not _HEX.fullmatch(compact):
        raise BadFingerprintError(
            f"{text.strip()[:80]!r} is not a SHA-256 fingerprint "
            "(expected SHA256: followed by 32 hex pairs, e.g. SHA256:3f:a2:…)"
        )
    return format_digest(bytes.fromhex(compact))


def matches(expected: str, actual: str) -> bool:
    """Compare two fingerprints (any accepted spelling) in constant time."""
    return hmac.compare_digest(parse(expected).encode(), parse(actual).encode())


def key_id(fingerprint: str) -> str:
    """The short, stable id operators type: first 16 hex digits of the fingerprint."""
    return parse(fingerprint)[len(PREFIX) :].replace(":", "")[:KEY_ID_LENGTH]
