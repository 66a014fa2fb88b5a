"""The controller's certificate authority (DESIGN §6).

Created at first start in ``<data-dir>/pki/`` (directory 0700, files 0600):

- ``ca.key`` / ``ca.crt`` — an ECDSA P-256 self-signed CA. P-256 rather than
  Ed25519 because every TLS stack (OpenSSL builds, RabbitMQ's Erlang TLS for
  x509 EXTERNAL, older agents) verifies ECDSA chains; the agents' own keys may
  still be Ed25519.
- ``server.key`` / ``server.crt`` — the gateway's certificate, issued by the CA
  for the hosts the controller listens on, re-issued when those change or the
  certificate nears expiry.

Device certificates carry the device uuid twice: as the subject CN and as the
URI SAN ``urn:hwfleet:device:<uuid>``; the gateway reads the SAN.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from hwfleet.trust import fingerprints
from hwfleet.trust.csr import CsrInfo, canonical_uuid, parse_csr
from hwfleet.trust.files import pki_dir, read_text, write_private

if TYPE_CHECKING:
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes

DEVICE_URN_PREFIX = "urn:hwfleet:device:"
CA_VALIDITY = dt.timedelta(days=3650)
SERVER_VALIDITY = dt.timedelta(days=397)
DEVICE_VALIDITY = dt.timedelta(days=365)
#: Re-issue the server certificate when less than this is left.
SERVER_RENEW_BEFORE = dt.timedelta(days=30)
#: Back-date certificates a little so a device whose clock lags still accepts them.
CLOCK_SKEW = dt.timedelta(minutes=5)

CA_KEY = "ca.key"
CA_CERT = "ca.crt"
SERVER_KEY = "server.key"
SERVER_CERT = "server.crt"


@dataclass(frozen=True, slots=True)
class ServerCertPaths:
    """Where the gateway's certificate and key are (what ``ssl.load_cert_chain`` takes)."""

    cert: Path
    key: Path


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _serial() -> int:
    # 159 random bits: positive, unique, below the 20-octet limit of RFC 5280.
    return secrets.randbits(159) | 1


def _san_entries(hosts: list[str]) -> list[x509.GeneralName]:
    from cryptography import x509

    entries: list[x509.GeneralName] = []
    seen: set[str] = set()
    for host in hosts:
        name = host.strip().strip("[]")
        if not name or name in seen:
            continue
        seen.add(name)
        try:
            address = ipaddress.ip_address(name)
        except ValueError:
            entries.append(x509.DNSName(name))
            continue
        # 0.0.0.0 / :: are listen wildcards, never an address a client dials.
        if not address.is_unspecified:
            entries.append(x509.IPAddress(address))
    if not entries:
        entries.append(x509.DNSName("localhost"))
    return entries


class CertificateAuthority:
    """The controller CA: signs device CSRs and the gateway's own certificate."""

    def __init__(
        self, directory: Path, key: ec.EllipticCurvePrivateKey, cert: x509.Certificate
    ) -> None:
        self.directory = directory
        self._key = key
        self._cert = cert
        from cryptography.hazmat.primitives import serialization

        self.ca_pem: str = cert.public_bytes(serialization.Encoding.PEM).decode("ascii")
        self._fingerprint = fingerprints.of_cert_pem(self.ca_pem)

    @classmethod
    def load_or_create(cls, data_dir: str | os.PathLike[str]) -> CertificateAuthority:
        """Load ``<data-dir>/pki/ca.{key,crt}``, creating them at first start."""
        from cryptography import x509
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import ec

        directory = pki_dir(data_dir)
        key_pem, cert_pem = read_text(directory / CA_KEY), read_text(directory / CA_CERT)
        if key_pem and cert_pem:
            for name in (CA_KEY, CA_CERT):
                os.chmod(directory / name, 0o600)
            key = serialization.load_pem_private_key(key_pem.encode(), password=None)
            if not isinstance(key, ec.EllipticCurvePrivateKey):
                raise ValueError(f"{directory / CA_KEY} is not an ECDSA key")
            return cls(directory, key, x509.load_pem_x509_certificate(cert_pem.encode()))
        if key_pem or cert_pem:
            raise FileNotFoundError(
                f"{directory} holds only one of {CA_KEY} and {CA_CERT}: restore the missing "
                "file from a backup, or remove both to create a new CA (every agent must then "
                "enroll again)"
            )
        key = ec.generate_private_key(ec.SECP256R1())
        cert = cls._self_signed(key)
        write_private(
            directory / CA_KEY,
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            ),
        )
        write_private(directory / CA_CERT, cert.public_bytes(serialization.Encoding.PEM))
        return cls(directory, key, cert)

    @staticmethod
    def _self_signed(key: ec.EllipticCurvePrivateKey) -> x509.Certificate:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes
        from cryptography.x509.oid import NameOID

        name = x509.Name(
            [
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, "hwfleet"),
                x509.NameAttribute(
                    NameOID.COMMON_NAME, f"hwfleet controller CA {_serial():x}"[:64]
                ),
            ]
        )
        now = _now()
        ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
        return (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(_serial())
            .not_valid_before(now - CLOCK_SKEW)
            .not_valid_after(now + CA_VALIDITY)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=False,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(ski, critical=False)
            .sign(key, hashes.SHA256())
        )

    @property
    def ca_path(self) -> Path:
        return self.directory / CA_CERT

    @property
    def certificate(self) -> x509.Certificate:
        return self._cert

    def fingerprint(self) -> str:
        """``SHA256:…`` of the CA certificate: what agents pin and operators compare."""
        return self._fingerprint

    def _builder(
        self, subject: x509.Name, public_key: CertificatePublicKeyTypes, valid: dt.timedelta
    ) -> x509.CertificateBuilder:
        from cryptography import x509

        now = _now()
        return (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(self._cert.subject)
            .public_key(public_key)
            .serial_number(_serial())
            .not_valid_before(now - CLOCK_SKEW)
            .not_valid_after(min(now + valid, self._cert.not_valid_after_utc))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self._key.public_key()),
                critical=False,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        )

    @staticmethod
    def _leaf_usage() -> x509.KeyUsage:
        from cryptography import x509

        return x509.KeyUsage(
            digital_signature=True,
            content_commitment=False,
            key_encipherment=False,
            data_encipherment=False,
            key_agreement=False,
            key_cert_sign=False,
            crl_sign=False,
            encipher_only=False,
            decipher_only=False,
        )

    def sign_csr(self, csr_pem: str | bytes | CsrInfo, device_uuid: str) -> str:
        """Sign a device CSR: CN and URI SAN name the uuid, clientAuth only, one year.

        Raises ``CsrError`` for a malformed or badly signed CSR or a weak key,
        ``ValueError`` for a uuid that is not a UUID. The CSR's own subject and
        extensions are ignored: the controller decides what the device may claim.
        """
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

        uuid = canonical_uuid(device_uuid)
        # A CSR the caller already parsed (and verified) is not checked again: enrollment
        # signs while holding the database write lock.
        info = csr_pem if isinstance(csr_pem, CsrInfo) else parse_csr(csr_pem)
        public_key = info.csr.public_key()
        subject = x509.Name(
            [
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, "hwfleet device"),
                x509.NameAttribute(NameOID.COMMON_NAME, uuid),
            ]
        )
        cert = (
            self._builder(subject, public_key, DEVICE_VALIDITY)
            .add_extension(
                x509.SubjectAlternativeName(
                    [x509.UniformResourceIdentifier(DEVICE_URN_PREFIX + uuid)]
                ),
                critical=False,
            )
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
            .add_extension(self._leaf_usage(), critical=True)
            .sign(self._key, hashes.SHA256())
        )
        return cert.public_bytes(serialization.Encoding.PEM).decode("ascii")

    def issue_server_cert(self, hosts: list[str]) -> ServerCertPaths:
        """The gateway's certificate for ``hosts`` (IPs and names), re-issued only when needed."""
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

        paths = ServerCertPaths(self.directory / SERVER_CERT, self.directory / SERVER_KEY)
        wanted = _san_entries(hosts)
        if self._server_cert_current(paths, wanted):
            return paths
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "hwfleet controller")])
        cert = (
            self._builder(subject, key.public_key(), SERVER_VALIDITY)
            .add_extension(x509.SubjectAlternativeName(wanted), critical=False)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(self._leaf_usage(), critical=True)
            .sign(self._key, hashes.SHA256())
        )
        write_private(
            paths.key,
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            ),
        )
        write_private(paths.cert, cert.public_bytes(serialization.Encoding.PEM))
        return paths

    def _server_cert_current(self, paths: ServerCertPaths, wanted: list[x509.GeneralName]) -> bool:
        from cryptography import x509
        from cryptography.exceptions import InvalidSignature

        pem = read_text(paths.cert)
        if pem is None or not paths.key.exists():
            return False
        try:
            cert = x509.load_pem_x509_certificate(pem.encode())
            # A CA re-created from scratch makes every old server certificate useless.
            cert.verify_directly_issued_by(self._cert)
            sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        except (ValueError, TypeError, x509.ExtensionNotFound, InvalidSignature):
            return False
        if set(sans) != set(wanted):
            return False
        return cert.not_valid_after_utc - _now() > SERVER_RENEW_BEFORE


def device_uuid_from_uris(uris: list[str]) -> str | None:
    """The device uuid named by a certificate's URI SANs, if exactly one is present."""
    found = {u[len(DEVICE_URN_PREFIX) :] for u in uris if u.startswith(DEVICE_URN_PREFIX)}
    if len(found) != 1:
        return None
    try:
        return canonical_uuid(found.pop())
    except ValueError:
        return None
