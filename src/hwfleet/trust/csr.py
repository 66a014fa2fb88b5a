"""Certificate signing requests: parse, verify the self-signature, enforce the key policy.

Only keys that are strong today are signed: Ed25519, ECDSA on P-256 or P-384,
and RSA of at least 3072 bits. Anything else is refused with a message that
names what was sent and what is accepted (the message carries no secret: a
CSR holds only a public key).
"""

from __future__ import annotations

import uuid as uuid_mod
from dataclasses import dataclass
from typing import TYPE_CHECKING

from hwfleet.errors import TrustError
from hwfleet.trust import fingerprints

if TYPE_CHECKING:
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes

#: Bytes; a CSR for any accepted key is far below this, so anything larger is garbage.
MAX_CSR_PEM = 16 * 1024
MIN_RSA_BITS = 3072
ACCEPTED_KEYS = "Ed25519, ECDSA P-256/P-384 or RSA >= 3072 bits"


class CsrError(TrustError, ValueError):
    """The CSR is malformed, badly signed, or uses a key hwfleet does not accept."""


@dataclass(frozen=True, slots=True)
class CsrInfo:
    """What the controller learns from a valid CSR."""

    csr: x509.CertificateSigningRequest
    #: Fingerprint of the public key (SubjectPublicKeyInfo), the key's identity.
    fingerprint: str
    key_type: str
    pem: str


def canonical_uuid(value: str) -> str:
    """A device uuid in canonical lower-case form, or ValueError saying what is wrong."""
    try:
        return str(uuid_mod.UUID(value))
    except (ValueError, AttributeError, TypeError):
        raise ValueError(f"{str(value)[:64]!r} is not a UUID") from None


def key_type_name(key: PublicKeyTypes) -> str:
    """Human name of a public key, e.g. ``RSA-2048`` or ``ECDSA-secp256r1``."""
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

    if isinstance(key, ed25519.Ed25519PublicKey):
        return "Ed25519"
    if isinstance(key, ec.EllipticCurvePublicKey):
        return f"ECDSA-{key.curve.name}"
    if isinstance(key, rsa.RSAPublicKey):
        return f"RSA-{key.key_size}"
    return type(key).__name__.removesuffix("PublicKey").lstrip("_") or "unknown"


def check_key_policy(key: PublicKeyTypes) -> str:
    """Return the key's type name, or raise CsrError for a key type or size hwfleet refuses."""
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

    name = key_type_name(key)
    if isinstance(key, ed25519.Ed25519PublicKey):
        return name
    if isinstance(key, ec.EllipticCurvePublicKey) and isinstance(
        key.curve, ec.SECP256R1 | ec.SECP384R1
    ):
        return name
    if isinstance(key, rsa.RSAPublicKey) and key.key_size >= MIN_RSA_BITS:
        return name
    raise CsrError(f"refusing a {name} key: hwfleet accepts {ACCEPTED_KEYS}")


def spki_fingerprint(key: PublicKeyTypes) -> str:
    """Fingerprint of a public key: SHA-256 of its SubjectPublicKeyInfo DER."""
    from cryptography.hazmat.primitives import serialization

    der = key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return fingerprints.of_der(der)


def parse_csr(pem: str | bytes) -> CsrInfo:
    """Load a PEM CSR, verify its self-signature and the key policy."""
    from cryptography import x509

    raw = pem.encode("ascii", "replace") if isinstance(pem, str) else pem
    if len(raw) > MAX_CSR_PEM:
        raise CsrError(f"CSR is {len(raw)} bytes; the limit is {MAX_CSR_PEM}")
    if b"-----BEGIN CERTIFICATE REQUEST-----" not in raw:
        raise CsrError("not a PEM certificate request (no BEGIN CERTIFICATE REQUEST line)")
    try:
        csr = x509.load_pem_x509_csr(raw)
    except ValueError as exc:
        raise CsrError(f"unreadable CSR: {exc}") from None
    try:
        key = csr.public_key()
    except (ValueError, TypeError) as exc:
        raise CsrError(f"CSR carries an unsupported public key: {exc}") from None
    key_type = check_key_policy(key)
    if not csr.is_signature_valid:
        raise CsrError("CSR signature does not verify: it was not signed by its own key")
    return CsrInfo(
        csr=csr,
        fingerprint=spki_fingerprint(key),
        key_type=key_type,
        pem=raw.decode("ascii").strip() + "\n",
    )
