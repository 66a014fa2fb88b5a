"""The agent's identity: its private key, its signed certificate, the pinned controller CA.

Files in ``<data-dir>/pki/`` (directory 0700, files 0600):

- ``agent.key`` — the agent's private key (Ed25519 by default), never leaves the device;
- ``agent.crt`` — the certificate the controller signed at enrollment;
- ``controller-ca.crt`` — the controller CA pinned at first contact: the only
  trust anchor the agent accepts afterwards;
- ``agent.json`` — uuid and fingerprints, so an enrolled agent can describe
  itself without parsing keys.

Memory budget: an enrolled, idle agent never imports ``cryptography``. The
``ssl`` module reads the PEM files itself; only key generation, CSR creation
and certificate checks at enrollment load it, inside the functions that need it.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Any

from hwfleet.errors import TrustError
from hwfleet.trust import fingerprints
from hwfleet.trust.files import PKI_DIR, pki_dir, read_text, write_private

AGENT_KEY = "agent.key"
AGENT_CERT = "agent.crt"
PINNED_CA = "controller-ca.crt"
#: Self-signed with ``agent.key``: what the device admin listener serves.
LISTENER_CERT = "listener.crt"
META = "agent.json"
KEY_TYPES = ("ed25519", "p256")


class IdentityError(TrustError, ValueError):
    """The identity on disk is inconsistent, or a certificate does not belong to this agent."""


class AgentIdentity:
    """One agent's key material; build it with :meth:`load_or_create`."""

    def __init__(self, directory: Path, uuid: str, fingerprint: str) -> None:
        self.directory = directory
        self.uuid = uuid
        #: ``SHA256:…`` of this agent's public key: what ``hwfleet keys list`` shows.
        self.fingerprint = fingerprint

    @staticmethod
    def check_owner(data_dir: str | os.PathLike[str], uuid: str) -> None:
        """Raise :class:`IdentityError` if ``<data-dir>/pki`` holds another device's identity.

        What :meth:`load_or_create` would refuse, checked without creating anything: a
        caller that makes the identity later (``hwfleet sim``) still fails at start.
        """
        directory = Path(data_dir) / PKI_DIR
        meta = _read_meta(directory / META)
        if meta is not None and meta.get("uuid") != uuid:
            raise IdentityError(
                f"{directory} holds the identity of device {meta.get('uuid')!r}, not {uuid!r}: "
                "give each device its own --data-dir"
            )

    @classmethod
    def load_or_create(
        cls, data_dir: str | os.PathLike[str], uuid: str, *, key_type: str = "ed25519"
    ) -> AgentIdentity:
        """Load the key for ``uuid`` from ``<data-dir>/pki``, generating it the first time."""
        directory = pki_dir(data_dir)
        meta = _read_meta(directory / META)
        key_exists = (directory / AGENT_KEY).exists()
        if key_exists and meta is not None:
            if meta.get("uuid") != uuid:
                raise IdentityError(
                    f"{directory} holds the identity of device {meta.get('uuid')!r}, not {uuid!r}: "
                    "give each device its own --data-dir"
                )
            for name in (AGENT_KEY, AGENT_CERT, PINNED_CA, META):
                if (directory / name).exists():
                    os.chmod(directory / name, 0o600)
            return cls(directory, uuid, str(meta["fingerprint"]))
        if key_exists:
            fingerprint = _fingerprint_of_key_file(directory / AGENT_KEY)
        else:
            fingerprint = _generate_key(directory / AGENT_KEY, key_type)
            # A new key invalidates any certificate a previous key was given.
            (directory / AGENT_CERT).unlink(missing_ok=True)
        identity = cls(directory, uuid, fingerprint)
        identity._write_meta()
        return identity

    # -- paths the ssl module loads ------------------------------------------------------
    @property
    def key_path(self) -> Path:
        return self.directory / AGENT_KEY

    @property
    def cert_path(self) -> Path:
        return self.directory / AGENT_CERT

    @property
    def ca_path(self) -> Path:
        return self.directory / PINNED_CA

    @property
    def is_enrolled(self) -> bool:
        """True once a signed certificate and a pinned CA are on disk."""
        return self.cert_path.exists() and self.ca_path.exists()

    @property
    def pinned_ca_fingerprint(self) -> str | None:
        """Fingerprint of the pinned controller CA (None before first contact)."""
        pem = read_text(self.ca_path)
        return fingerprints.of_cert_pem(pem) if pem else None

    def csr_pem(self) -> str:
        """A CSR for this agent's key (subject CN = uuid; the controller decides the rest)."""
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
        from cryptography.x509.oid import NameOID

        key = serialization.load_pem_private_key(self.key_path.read_bytes(), password=None)
        if not isinstance(
            key, ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey
        ):
            raise IdentityError(f"{self.key_path} holds a key type hwfleet cannot use")
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, self.uuid)])
        # Ed25519 signs the message itself; the other key types sign a SHA-256 digest.
        algorithm = None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256()
        csr = x509.CertificateSigningRequestBuilder().subject_name(name).sign(key, algorithm)
        return csr.public_bytes(serialization.Encoding.PEM).decode("ascii")

    def save_certificate(self, cert_pem: str, ca_pem: str) -> None:
        """Store the signed certificate and pin ``ca_pem``, after checking both belong together.

        The certificate must carry this agent's public key, name this agent's
        uuid and be signed by ``ca_pem``; otherwise nothing is written.
        """
        from cryptography import x509
        from cryptography.exceptions import InvalidSignature

        from hwfleet.trust.ca import device_uuid_from_uris
        from hwfleet.trust.csr import spki_fingerprint

        try:
            cert = x509.load_pem_x509_certificate(cert_pem.encode("ascii"))
            ca = x509.load_pem_x509_certificate(ca_pem.encode("ascii"))
        except (ValueError, UnicodeEncodeError) as exc:
            raise IdentityError(f"the controller sent an unreadable certificate: {exc}") from None
        if spki_fingerprint(cert.public_key()) != self.fingerprint:
            raise IdentityError("the signed certificate carries another key than this agent's")
        try:
            uris = cert.extensions.get_extension_for_class(
                x509.SubjectAlternativeName
            ).value.get_values_for_type(x509.UniformResourceIdentifier)
        except x509.ExtensionNotFound:
            uris = []
        if device_uuid_from_uris(uris) != self.uuid:
            raise IdentityError(f"the signed certificate does not name device {self.uuid}")
        try:
            cert.verify_directly_issued_by(ca)
        except (ValueError, TypeError, InvalidSignature):
            raise IdentityError(
                "the signed certificate was not issued by the CA sent with it"
            ) from None
        write_private(self.ca_path, ca_pem.strip().encode("ascii") + b"\n")
        write_private(self.cert_path, cert_pem.strip().encode("ascii") + b"\n")
        self._write_meta()

    def forget_certificate(self) -> None:
        """Drop the certificate (the controller deleted our key) but keep the key and the pin.

        A re-enrollment then expects the same controller CA as before.
        """
        self.cert_path.unlink(missing_ok=True)
        self._write_meta()

    def listener_certificate(self) -> Path:
        """``pki/listener.crt``, made on first use: the agent key, self-signed, serverAuth.

        Clients pin the device by its key fingerprint (``hwfleet keys list``),
        not by a CA, so self-signed is enough; it is re-made if the key changed.
        """
        import datetime as dt

        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ed25519
        from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

        from hwfleet.trust.ca import DEVICE_URN_PREFIX
        from hwfleet.trust.csr import spki_fingerprint

        path = self.directory / LISTENER_CERT
        pem = read_text(path)
        if pem:
            current = x509.load_pem_x509_certificate(pem.encode("ascii"))
            if spki_fingerprint(current.public_key()) == self.fingerprint:
                return path
        key = serialization.load_pem_private_key(self.key_path.read_bytes(), password=None)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, self.uuid)])
        now = dt.datetime.now(dt.UTC)
        builder = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())  # type: ignore[arg-type]
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=3650))
            .add_extension(
                x509.SubjectAlternativeName(
                    [x509.UniformResourceIdentifier(DEVICE_URN_PREFIX + self.uuid)]
                ),
                critical=False,
            )
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        )
        algorithm = None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256()
        cert = builder.sign(key, algorithm)  # type: ignore[arg-type]
        write_private(path, cert.public_bytes(serialization.Encoding.PEM))
        return path

    def describe(self) -> dict[str, Any]:
        return {
            "uuid": self.uuid,
            "fingerprint": self.fingerprint,
            "enrolled": self.is_enrolled,
            "controller_ca_fingerprint": self.pinned_ca_fingerprint,
        }

    def _write_meta(self) -> None:
        body = {"uuid": self.uuid, "fingerprint": self.fingerprint}
        data = json.dumps(body, indent=2).encode() + b"\n"
        path = self.directory / META
        with contextlib.suppress(OSError):
            if path.read_bytes() == data:
                return  # already right: a rewrite would cost an fsync for nothing
        write_private(path, data)


def _read_meta(path: Path) -> dict[str, Any] | None:
    text = read_text(path)
    if text is None:
        return None
    try:
        meta = json.loads(text)
    except ValueError:
        return None  # rebuilt from the key file below
    if not isinstance(meta, dict) or not isinstance(meta.get("fingerprint"), str):
        return None
    return meta


def _generate_key(path: Path, key_type: str) -> str:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519

    from hwfleet.trust.csr import spki_fingerprint

    if key_type not in KEY_TYPES:
        raise ValueError(f"key type {key_type!r} is not one of {', '.join(KEY_TYPES)}")
    key: ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey = (
        ed25519.Ed25519PrivateKey.generate()
        if key_type == "ed25519"
        else ec.generate_private_key(ec.SECP256R1())
    )
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    write_private(path, pem)
    return spki_fingerprint(key.public_key())


def _fingerprint_of_key_file(path: Path) -> str:
    from cryptography.hazmat.primitives import serialization

    from hwfleet.trust.csr import spki_fingerprint

    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (ValueError, TypeError) as exc:
        raise IdentityError(f"{path} is not a readable private key: {exc}") from None
    return spki_fingerprint(key.public_key())
