"""Identity and trust (DESIGN §6): the controller CA, agent identities, TLS, enrollment.

Importing this package loads only the standard library and msgspec: an
enrolled agent uses :class:`AgentIdentity` and :func:`enrolled_context`
without ever importing ``cryptography``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from hwfleet._lazy import lazy_exports

if TYPE_CHECKING:
    from hwfleet.trust.ca import CertificateAuthority, ServerCertPaths
    from hwfleet.trust.compare import secret_equals
    from hwfleet.trust.csr import CsrError, canonical_uuid, parse_csr
    from hwfleet.trust.enrollment import EnrollmentService
    from hwfleet.trust.fingerprints import BadFingerprintError
    from hwfleet.trust.identity import AgentIdentity, IdentityError
    from hwfleet.trust.keyadmin import KeyAdmin, KeyConflictError, KeyNotFoundError
    from hwfleet.trust.messages import (
        BUS_CREDENTIALS,
        ENROLL,
        ENROLL_HELLO,
        EnrollParams,
        EnrollReply,
        EventSink,
        IssuedToken,
        RevokeHook,
    )
    from hwfleet.trust.ratelimit import RateLimiter
    from hwfleet.trust.tls import (
        FirstContactError,
        PeerIdentity,
        enrolled_context,
        first_contact_context,
        peer_identity,
        server_context,
        verify_first_contact,
    )

# Exports resolve on first use: see hwfleet._lazy.
_EXPORTS = {
    "CertificateAuthority": "ca",
    "ServerCertPaths": "ca",
    "secret_equals": "compare",
    "CsrError": "csr",
    "canonical_uuid": "csr",
    "parse_csr": "csr",
    "EnrollmentService": "enrollment",
    "BadFingerprintError": "fingerprints",
    "AgentIdentity": "identity",
    "IdentityError": "identity",
    "KeyAdmin": "keyadmin",
    "KeyConflictError": "keyadmin",
    "KeyNotFoundError": "keyadmin",
    "BUS_CREDENTIALS": "messages",
    "ENROLL": "messages",
    "ENROLL_HELLO": "messages",
    "EnrollParams": "messages",
    "EnrollReply": "messages",
    "EventSink": "messages",
    "IssuedToken": "messages",
    "RevokeHook": "messages",
    "RateLimiter": "ratelimit",
    "FirstContactError": "tls",
    "PeerIdentity": "tls",
    "enrolled_context": "tls",
    "first_contact_context": "tls",
    "peer_identity": "tls",
    "server_context": "tls",
    "verify_first_contact": "tls",
}


__getattr__ = lazy_exports(__name__, _EXPORTS)


__all__ = [
    "BUS_CREDENTIALS",
    "ENROLL",
    "ENROLL_HELLO",
    "AgentIdentity",
    "BadFingerprintError",
    "CertificateAuthority",
    "CsrError",
    "EnrollParams",
    "EnrollReply",
    "EnrollmentService",
    "EventSink",
    "FirstContactError",
    "IdentityError",
    "IssuedToken",
    "KeyAdmin",
    "KeyConflictError",
    "KeyNotFoundError",
    "PeerIdentity",
    "RateLimiter",
    "RevokeHook",
    "ServerCertPaths",
    "canonical_uuid",
    "enrolled_context",
    "first_contact_context",
    "parse_csr",
    "peer_identity",
    "secret_equals",
    "server_context",
    "verify_first_contact",
]
