"""The controller CA: private files, stable identity, CSR policy, device and server certs."""

from __future__ import annotations

import datetime as dt
import hashlib
import ipaddress
import ssl
import stat
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from hwfleet.trust import CertificateAuthority, CsrError
from hwfleet.trust.ca import DEVICE_URN_PREFIX
from hwfleet.trust.csr import parse_csr, spki_fingerprint


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_files_are_private_and_reloaded(tmp_path: Path) -> None:
    ca = CertificateAuthority.load_or_create(tmp_path)
    pki = tmp_path / "pki"
    assert mode(pki) == 0o700
    assert mode(pki / "ca.key") == 0o600
    assert mode(pki / "ca.crt") == 0o600
    paths = ca.issue_server_cert(["127.0.0.1"])
    assert mode(paths.key) == 0o600 and mode(paths.cert) == 0o600
    again = CertificateAuthority.load_or_create(tmp_path)
    assert again.fingerprint() == ca.fingerprint()
    assert again.ca_pem == ca.ca_pem


def test_loosened_permissions_are_tightened_on_load(tmp_path: Path) -> None:
    CertificateAuthority.load_or_create(tmp_path)
    (tmp_path / "pki" / "ca.key").chmod(0o644)
    (tmp_path / "pki").chmod(0o755)
    CertificateAuthority.load_or_create(tmp_path)
    assert mode(tmp_path / "pki" / "ca.key") == 0o600
    assert mode(tmp_path / "pki") == 0o700


def test_half_a_ca_is_an_error_not_a_silent_new_ca(tmp_path: Path) -> None:
    CertificateAuthority.load_or_create(tmp_path)
    (tmp_path / "pki" / "ca.key").unlink()
    with pytest.raises(FileNotFoundError, match="holds only one of"):
        CertificateAuthority.load_or_create(tmp_path)


def test_fingerprint_is_sha256_of_the_certificate_der(ca: CertificateAuthority) -> None:
    der = ssl.PEM_cert_to_DER_cert(ca.ca_pem)
    hexed = hashlib.sha256(der).hexdigest()
    assert ca.fingerprint() == "SHA256:" + ":".join(hexed[i : i + 2] for i in range(0, 64, 2))
    cert = x509.load_pem_x509_certificate(ca.ca_pem.encode())
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca


@pytest.mark.parametrize("kind", ["ed25519", "p256", "p384", "rsa3072"])
def test_sign_csr_accepted_key_types(ca: CertificateAuthority, keys: Any, kind: str) -> None:
    key = keys.make_key(kind)
    device = str(uuid.uuid4())
    pem = ca.sign_csr(keys.csr_for(key, cn="ignored-by-the-ca"), device.upper())
    cert = x509.load_pem_x509_certificate(pem.encode())
    cert.verify_directly_issued_by(ca.certificate)
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == device
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.UniformResourceIdentifier) == [DEVICE_URN_PREFIX + device]
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    lifetime = cert.not_valid_after_utc - cert.not_valid_before_utc
    assert dt.timedelta(days=364) < lifetime < dt.timedelta(days=366)
    assert spki_fingerprint(cert.public_key()) == spki_fingerprint(key.public_key())


@pytest.mark.parametrize(("kind", "named"), [("rsa2048", "RSA-2048"), ("p521", "secp521r1")])
def test_weak_or_unaccepted_keys_are_refused(
    ca: CertificateAuthority, keys: Any, kind: str, named: str
) -> None:
    with pytest.raises(CsrError, match=f"refusing a .*{named}.* key: hwfleet accepts Ed25519"):
        ca.sign_csr(keys.csr_for(keys.make_key(kind)), str(uuid.uuid4()))


def test_tampered_csr_is_refused(ca: CertificateAuthority, keys: Any) -> None:
    # A CSR whose body claims key A but is signed by key B: the self-signature fails.
    key_a, key_b = keys.make_key("p256"), keys.make_key("p256")
    good = x509.load_pem_x509_csr(keys.csr_for(key_a).encode())
    other = x509.load_pem_x509_csr(keys.csr_for(key_b).encode())
    der_a = good.public_bytes(serialization.Encoding.DER)
    spki_a = key_a.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    spki_b = key_b.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    assert spki_a in der_a and len(spki_a) == len(spki_b)
    forged_der = der_a.replace(spki_a, spki_b)
    forged = x509.load_der_x509_csr(forged_der).public_bytes(serialization.Encoding.PEM).decode()
    assert other  # key B's own CSR is fine; only the splice is forged
    with pytest.raises(CsrError, match="signature does not verify"):
        parse_csr(forged)


@pytest.mark.parametrize(
    ("garbage", "message"),
    [
        ("hello", "not a PEM certificate request"),
        (
            "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n",
            "unreadable",
        ),
        ("-----BEGIN CERTIFICATE REQUEST-----" + "A" * 20000, "limit is"),
    ],
)
def test_garbage_csr_is_refused_with_a_reason(
    ca: CertificateAuthority, garbage: str, message: str
) -> None:
    with pytest.raises(CsrError, match=message):
        ca.sign_csr(garbage, str(uuid.uuid4()))


def test_device_uuid_must_be_a_uuid(ca: CertificateAuthority, new_csr: Callable[..., str]) -> None:
    with pytest.raises(ValueError, match="is not a UUID"):
        ca.sign_csr(new_csr(), "../../etc/passwd")


def test_server_cert_sans_caching_and_reissue(ca: CertificateAuthority) -> None:
    paths = ca.issue_server_cert(["127.0.0.1", "0.0.0.0", "ctl.example", "127.0.0.1"])
    first = paths.cert.read_bytes()
    cert = x509.load_pem_x509_certificate(first)
    cert.verify_directly_issued_by(ca.certificate)
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("127.0.0.1")]
    assert san.get_values_for_type(x509.DNSName) == ["ctl.example"]
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.SERVER_AUTH]
    # Same hosts (any order): the cached certificate is kept.
    assert ca.issue_server_cert(["ctl.example", "127.0.0.1"]).cert.read_bytes() == first
    # Other hosts: re-issued.
    ca.issue_server_cert(["127.0.0.2"])
    assert paths.cert.read_bytes() != first
    # A certificate from another CA on disk is replaced, not served.
    other = CertificateAuthority.load_or_create(ca.directory.parent / "elsewhere")
    other_paths = other.issue_server_cert(["127.0.0.2"])
    paths.cert.write_bytes(other_paths.cert.read_bytes())
    paths.key.write_bytes(other_paths.key.read_bytes())
    ca.issue_server_cert(["127.0.0.2"])
    x509.load_pem_x509_certificate(paths.cert.read_bytes()).verify_directly_issued_by(
        ca.certificate
    )


def test_server_cert_near_expiry_is_reissued(
    ca: CertificateAuthority, monkeypatch: pytest.MonkeyPatch
) -> None:
    from hwfleet.trust import ca as ca_module

    paths = ca.issue_server_cert(["127.0.0.1"])
    first = paths.cert.read_bytes()
    real_now = ca_module._now
    monkeypatch.setattr(ca_module, "_now", lambda: real_now() + dt.timedelta(days=380))
    ca.issue_server_cert(["127.0.0.1"])
    assert paths.cert.read_bytes() != first
