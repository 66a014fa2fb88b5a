"""TLS contexts for the agent link, both ends, and the checks around them (DESIGN §6).

Controller: :func:`server_context` asks for a client certificate but does not
require one (``CERT_OPTIONAL``): an unenrolled agent connects without one and
may only call ``enroll``; a certificate that does not chain to the controller
CA fails the handshake. :func:`peer_identity` reads the device uuid and key
fingerprint from the verified certificate; the gateway then asks
``EnrollmentService.check_session`` whether that key is still accepted.

Agent: before enrollment there is no pinned CA, so :func:`first_contact_context`
does not verify at the handshake; :func:`verify_first_contact` then checks that
the certificate the server presented was issued by the CA the controller sent
(and, with ``--controller-fingerprint``, that this CA is the expected one).
After enrollment :func:`enrolled_context` does mutual TLS against the pinned CA
only.

The device's admin listener (:mod:`hwfleet.agent.access.admin_listener`) is the other
way round: :func:`listener_context` serves the device's own key, and a client
checks it with :func:`verify_device` against the device's key fingerprint
before it signs anything; clients prove their key inside the session
(:mod:`hwfleet.trust.deviceauth`), not with TLS client certificates.

Only the standard library is imported at module level: an enrolled agent builds
its context without loading ``cryptography``.
"""

from __future__ import annotations

import datetime as dt
import functools
import ssl
from typing import TYPE_CHECKING

import msgspec

from hwfleet.errors import TrustError
from hwfleet.trust import fingerprints

if TYPE_CHECKING:
    from hwfleet.trust.ca import CertificateAuthority, ServerCertPaths
    from hwfleet.trust.identity import AgentIdentity

#: TLS 1.2 ciphers (TLS 1.3 suites are all strong): forward secrecy and AEAD only.
TLS12_CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20"

SslObject = ssl.SSLObject | ssl.SSLSocket


class FirstContactError(TrustError, ssl.SSLError):
    """The controller reached at first contact is not the one its reply claims (or expected)."""


class PeerIdentity(msgspec.Struct, frozen=True):
    """Who a verified client certificate says the peer is.

    A struct rather than a dataclass: the agent loads this module, and ``dataclasses``
    would stay resident in it for this one record (issue 18).
    """

    device_uuid: str
    #: ``SHA256:…`` of the certificate's public key: the key row in the store.
    fingerprint: str
    #: ``SHA256:…`` of the certificate itself.
    cert_fingerprint: str


def _base(purpose: ssl.Purpose) -> ssl.SSLContext:
    protocol = (
        ssl.PROTOCOL_TLS_SERVER if purpose is ssl.Purpose.CLIENT_AUTH else ssl.PROTOCOL_TLS_CLIENT
    )
    context = ssl.SSLContext(protocol)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_ciphers(TLS12_CIPHERS)
    context.options |= ssl.OP_NO_COMPRESSION | ssl.OP_NO_RENEGOTIATION
    return context


def server_context(ca: CertificateAuthority, server_cert_paths: ServerCertPaths) -> ssl.SSLContext:
    """The gateway's context: its CA-issued certificate, client certificates optional."""
    context = _base(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(server_cert_paths.cert, server_cert_paths.key)
    # The controller CA is the only root for client certificates: no system roots.
    context.load_verify_locations(cadata=ca.ca_pem)
    context.verify_mode = ssl.CERT_OPTIONAL
    return context


def peer_identity(ssl_object: SslObject | None) -> PeerIdentity | None:
    """The device a verified client certificate names, or None (no certificate, no device URI).

    With ``CERT_OPTIONAL`` OpenSSL has already refused any certificate that does
    not chain to the controller CA, so a certificate seen here is verified.
    """
    if ssl_object is None:
        return None
    der = ssl_object.getpeercert(binary_form=True)
    if not der:
        return None
    from cryptography import x509

    from hwfleet.trust.ca import device_uuid_from_uris
    from hwfleet.trust.csr import spki_fingerprint

    cert = x509.load_der_x509_certificate(der)
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return None
    uuid = device_uuid_from_uris(san.get_values_for_type(x509.UniformResourceIdentifier))
    if uuid is None:
        return None
    return PeerIdentity(
        device_uuid=uuid,
        fingerprint=spki_fingerprint(cert.public_key()),
        cert_fingerprint=fingerprints.of_der(der),
    )


def first_contact_context(expected_fingerprint: str | None = None) -> ssl.SSLContext:
    """The agent's context before enrollment: encrypted, verified after the handshake.

    There is no pinned CA yet, so nothing can be verified during the handshake;
    call :func:`verify_first_contact` with the CA the controller returns before
    trusting anything it says. ``expected_fingerprint`` (``--controller-fingerprint``)
    is checked for syntax here, so a typo fails before any connection is made.
    """
    if expected_fingerprint is not None:
        fingerprints.parse(expected_fingerprint)
    return _first_contact()


@functools.cache
def _first_contact() -> ssl.SSLContext:
    """One first-contact context per process: it holds no key and no CA, so every
    connection can share it, and making one (about 0.5 ms) was a tenth of what
    ``hwfleet sim`` spent per enrolling device, refused attempts included (issue 18)."""
    context = _base(ssl.Purpose.SERVER_AUTH)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def verify_first_contact(
    ssl_object: SslObject, ca_pem: str, expected_fingerprint: str | None
) -> str:
    """Check the first-contact server against ``ca_pem``; return the fingerprint to pin.

    Refuses (``FirstContactError``) when ``ca_pem`` is not a CA, when the
    server's certificate was not issued by it (a relay or an impostor), or when
    its fingerprint differs from ``expected_fingerprint``.
    """
    try:
        actual = fingerprints.of_cert_pem(ca_pem)
    except ValueError as exc:
        raise FirstContactError(f"the controller sent no usable CA certificate: {exc}") from None
    if expected_fingerprint is not None and not fingerprints.matches(expected_fingerprint, actual):
        raise FirstContactError(
            f"controller CA fingerprint {actual} does not match the expected "
            f"{fingerprints.parse(expected_fingerprint)}: refusing this controller"
        )
    der = ssl_object.getpeercert(binary_form=True)
    if not der:
        raise FirstContactError("the controller presented no certificate")
    not_before, not_after = _issued_by(ca_pem, der, actual)
    now = dt.datetime.now(dt.UTC)
    if not not_before <= now <= not_after:
        raise FirstContactError("the controller's certificate is outside its validity period")
    return actual


@functools.lru_cache(maxsize=8)
def _issued_by(ca_pem: str, der: bytes, actual: str) -> tuple[dt.datetime, dt.datetime]:
    """Check that the server certificate ``der`` is a controller's, issued by the CA
    ``ca_pem``; its validity period. Raises :class:`FirstContactError` otherwise.

    Remembered for the same bytes (a failure is not): the answer cannot change, and an
    agent checks the same pair twice per enrollment (the hello, then the reply), a
    simulator of a thousand devices two thousand times (issue 18). The clock is read
    by the caller every time.
    """
    from cryptography import x509
    from cryptography.exceptions import InvalidSignature

    try:
        ca = x509.load_pem_x509_certificate(ca_pem.encode("ascii"))
        server = x509.load_der_x509_certificate(der)
        constraints = ca.extensions.get_extension_for_class(x509.BasicConstraints).value
    except (ValueError, UnicodeEncodeError, x509.ExtensionNotFound) as exc:
        raise FirstContactError(f"unusable controller certificates: {exc}") from None
    if not constraints.ca:
        raise FirstContactError("the certificate the controller sent as its CA is not a CA")
    try:
        server.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):
        raise FirstContactError(
            f"the server's certificate was not issued by the CA it sent ({actual}): "
            "an impostor or a relay; refusing"
        ) from None
    check_controller_cert(server)
    return server.not_valid_before_utc, server.not_valid_after_utc


def enrolled_context(identity: AgentIdentity) -> ssl.SSLContext:
    """The enrolled agent's context: mutual TLS, the pinned controller CA as the only root.

    ``check_hostname`` is off on purpose: agents reach the controller by IP
    (often through NAT or a changed DHCP lease), so the name in the URL proves
    nothing. Trust comes from the pin instead: only a certificate issued by
    this private CA — which signs nothing but this controller's gateway and
    its own devices — passes. Device certificates carry only the clientAuth
    usage, and OpenSSL's purpose check (``unsuitable certificate purpose``)
    refuses one presented as a server certificate, so an enrolled device cannot
    pose as the controller to its neighbours. Public CAs are never loaded.
    """
    if not identity.is_enrolled:
        raise FileNotFoundError(
            f"agent {identity.uuid} is not enrolled: no certificate in {identity.directory}"
        )
    context = _base(ssl.Purpose.SERVER_AUTH)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_REQUIRED
    context.load_verify_locations(cafile=str(identity.ca_path))
    context.load_cert_chain(str(identity.cert_path), str(identity.key_path))
    return context


def check_controller_cert(cert: object) -> None:
    """Refuse a first-contact server whose certificate lacks the serverAuth usage.

    Enrolled contexts get this check from OpenSSL's purpose check; first
    contact verifies by hand, so it repeats it: a device certificate from the
    real CA must not pass for the controller.
    """
    from cryptography import x509
    from cryptography.x509.oid import ExtendedKeyUsageOID

    assert isinstance(cert, x509.Certificate)
    try:
        usage = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        raise FirstContactError("the server's certificate has no serverAuth usage") from None
    if ExtendedKeyUsageOID.SERVER_AUTH not in usage:
        raise FirstContactError("the server's certificate is not a controller certificate")


def listener_context(cert_path: str, key_path: str) -> ssl.SSLContext:
    """The device admin listener's context: its own certificate, no client certificates."""
    context = _base(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert_path, key_path)
    context.verify_mode = ssl.CERT_NONE  # clients sign a challenge in the session instead
    return context


def device_client_context() -> ssl.SSLContext:
    """A client's context for a device listener: verified after the handshake by key pin."""
    context = _base(ssl.Purpose.SERVER_AUTH)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def verify_device(ssl_object: SslObject | None, expected_fingerprint: str) -> str:
    """Check the listener's certificate carries the expected device key; return its cert hash.

    The certificate's own fingerprint is what the client signs (deviceauth), so a
    relay that terminates TLS with any other certificate cannot reuse the signature.
    """
    der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
    if not der:
        raise FirstContactError("the device presented no certificate")
    from cryptography import x509

    from hwfleet.trust.csr import spki_fingerprint

    actual = spki_fingerprint(x509.load_der_x509_certificate(der).public_key())
    if not fingerprints.matches(expected_fingerprint, actual):
        raise FirstContactError(
            f"the device's key is {actual}, not the expected "
            f"{fingerprints.parse(expected_fingerprint)}: refusing to log in"
        )
    return fingerprints.of_der(der)
