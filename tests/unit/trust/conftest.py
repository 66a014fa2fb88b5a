"""Fixtures for the trust tests: a real CA on disk, a real SQLite store, the service."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import NameOID

from hwfleet.store import EventRecord, Store
from hwfleet.trust import CertificateAuthority, EnrollmentService, RateLimiter

PASSWORD = "correct horse battery staple"

PrivateKey = ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey


def make_key(kind: str) -> PrivateKey:
    if kind == "ed25519":
        return ed25519.Ed25519PrivateKey.generate()
    if kind.startswith("rsa"):
        return rsa.generate_private_key(public_exponent=65537, key_size=int(kind[3:]))
    curve = {"p256": ec.SECP256R1(), "p384": ec.SECP384R1(), "p521": ec.SECP521R1()}[kind]
    return ec.generate_private_key(curve)


def csr_for(key: PrivateKey, cn: str = "device") -> str:
    algorithm = None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256()
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
        .sign(key, algorithm)
    )
    return csr.public_bytes(serialization.Encoding.PEM).decode()


class Keys:
    """Key and CSR factories for tests (a fixture: test modules cannot import conftest)."""

    make_key = staticmethod(make_key)
    csr_for = staticmethod(csr_for)


@pytest.fixture
def keys() -> type[Keys]:
    return Keys


@pytest.fixture
def password() -> str:
    return PASSWORD


@pytest.fixture
def new_csr() -> Callable[..., str]:
    """``new_csr(kind="ed25519")``: a CSR for a fresh key of that kind."""

    def build(kind: str = "ed25519") -> str:
        return csr_for(make_key(kind))

    return build


@pytest.fixture
def ca(tmp_path: Path) -> CertificateAuthority:
    return CertificateAuthority.load_or_create(tmp_path / "controller")


class Recorder:
    """Collects the events and revocations the service reports."""

    def __init__(self) -> None:
        self.events: list[tuple[str, dict[str, Any]]] = []
        self.revoked: list[tuple[str, str]] = []

    async def event(self, routing_key: str, payload: dict[str, Any], row: EventRecord) -> None:
        assert row.routing_key == routing_key and row.id > 0  # the committed row comes along
        self.events.append((routing_key, payload))

    def revoke(self, device_uuid: str, fingerprint: str) -> None:
        self.revoked.append((device_uuid, fingerprint))


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
def service(store: Store, ca: CertificateAuthority, recorder: Recorder) -> EnrollmentService:
    return EnrollmentService(
        store,
        ca,
        password=PASSWORD,
        limiter=RateLimiter(),
        events=recorder.event,
        on_revoke=recorder.revoke,
    )
