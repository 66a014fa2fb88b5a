"""The controller keys a device obeys (seed 004 ``add_trust`` / ``list_trust`` / ``remove_trust``).

``<data-dir>/trusted-controllers.json`` holds one entry per key: its
``access_id`` (the ``SHA256:…`` fingerprint, hwfleet's one format), a label for
humans, and when it was added. The controller CA the agent pinned at enrollment
is always in the list (the TLS link obeys it whatever the file says), so
``list`` on a fresh device already shows who it obeys.

A certificate PEM is identified by the fingerprint of the certificate (what
enrollment pins and ``--controller-fingerprint`` takes); a public-key PEM by the
fingerprint of its SubjectPublicKeyInfo (what ``hwfleet keys`` shows).

Who the list admits: the enrolled controller over its own link (its pinned CA,
always listed and never removable here: that trust is managed by enrollment,
``hwfleet keys reject`` at the controller), and, on the device's admin listener
(:mod:`hwfleet.agent.access.admin_listener`), any client that proves a key listed here
(by the fingerprint of its public key), or proves a key and gives the device
password, which adds that key. Removing a key closes its live sessions at once.

Removing the key of the peer sending the command is refused: one typo would
otherwise lock the operator out of the device for good.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from hwfleet.agent.localstate import LocalState
from hwfleet.agent.peers import CALLER
from hwfleet.errors import TrustError
from hwfleet.trust import fingerprints

TRUST_DOC = "trusted-controllers.json"
MAX_LABEL = 128
MAX_ENTRIES = 64
CURRENT_LABEL = "controller (pinned at enrollment)"


class TrustListError(TrustError, ValueError):
    """A bad key or label (``bad_params``)."""


class TrustRefusedError(TrustError):
    """The change would lock out the controller sending it."""


class TrustNotFoundError(TrustError, LookupError):
    """No such key in the list."""


@dataclass(frozen=True, slots=True)
class TrustedKey:
    access_id: str
    label: str
    added_at: str

    def to_doc(self) -> dict[str, str]:
        return {"access_id": self.access_id, "label": self.label, "added_at": self.added_at}


def fingerprint_of_pem(pem: str) -> str:
    """The access id of a PEM certificate or public key; :class:`TrustListError` for anything else.

    ``cryptography`` is imported here only: adding a key is rare, and an idle
    agent must not carry the library.
    """
    from cryptography import x509
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives import serialization

    text = pem.strip()
    data = text.encode("ascii", errors="replace")
    if "BEGIN CERTIFICATE" in text:
        try:
            cert = x509.load_pem_x509_certificate(data)
        except ValueError:
            raise TrustListError("pem: not a readable PEM certificate") from None
        return fingerprints.of_der(cert.public_bytes(serialization.Encoding.DER))
    if "PUBLIC KEY" in text:
        try:
            key = serialization.load_pem_public_key(data)
        except (ValueError, TypeError, UnsupportedAlgorithm):
            raise TrustListError("pem: not a readable PEM public key") from None
        spki = key.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        return fingerprints.of_der(spki)
    raise TrustListError("pem: expected a PEM certificate or public key (-----BEGIN …-----)")


def parse_access_id(text: str, field: str = "access_id") -> str:
    try:
        return fingerprints.parse(text)
    except fingerprints.BadFingerprintError as exc:
        raise TrustListError(f"{field}: {exc}") from None


def check_label(label: str) -> str:
    label = label.strip()
    if len(label) > MAX_LABEL:
        raise TrustListError(f"label: at most {MAX_LABEL} characters")
    if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in label):
        raise TrustListError("label: control characters are not allowed")
    return label


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class TrustList:
    """The trusted controller keys in a :class:`LocalState`; callers hold ``state.lock``."""

    def __init__(self, state: LocalState) -> None:
        self._state = state

    def current(self) -> str | None:
        """The peer sending the command now: a listener client's key, else the pinned CA."""
        return CALLER.get() or self._state.pinned_controller()

    def is_trusted(self, access_id: str) -> bool:
        return any(entry.access_id == access_id for entry in self.entries())

    def entries(self) -> list[TrustedKey]:
        """The stored keys, with the pinned controller first when it is not stored.

        The pinned controller is obeyed whatever the file says (the TLS link
        accepts only it), so the list never hides it.
        """
        found: list[TrustedKey] = []
        doc = self._state.read(TRUST_DOC) or {}
        for raw in doc.get("keys", []):
            try:
                found.append(
                    TrustedKey(
                        parse_access_id(str(raw["access_id"])),
                        str(raw.get("label", "")),
                        str(raw.get("added_at", "")),
                    )
                )
            except (KeyError, TypeError, TrustListError):
                continue  # a hand-edited entry that is not a key trusts nobody
        pinned = self._state.pinned_controller()
        if pinned is not None and all(e.access_id != pinned for e in found):
            found.insert(0, TrustedKey(pinned, CURRENT_LABEL, ""))
        return found

    def describe(self) -> dict[str, Any]:
        current = self.current()
        return {
            "trust": [
                {**entry.to_doc(), "current": entry.access_id == current}
                for entry in self.entries()
            ],
            "current": current,
        }

    def _save(self, entries: list[TrustedKey]) -> None:
        self._state.write(TRUST_DOC, {"version": 1, "keys": [e.to_doc() for e in entries]})

    def add(self, access_id: str, label: str) -> tuple[TrustedKey, bool]:
        """Trust a key; returns it and whether it is new (adding twice keeps the first)."""
        access_id = parse_access_id(access_id)
        label = check_label(label)
        entries = self.entries()
        for entry in entries:
            if entry.access_id == access_id:
                return entry, False
        if len(entries) >= MAX_ENTRIES:
            raise TrustListError(f"the trust list is full ({MAX_ENTRIES} keys); remove one first")
        entry = TrustedKey(access_id, label, _now())
        self._save([*entries, entry])
        return entry, True

    def remove(self, access_id: str) -> TrustedKey:
        access_id = parse_access_id(access_id)
        current = self.current()
        if current is not None and access_id == current:
            raise TrustRefusedError(
                f"refusing to remove {access_id}: it is the key of the controller sending this "
                "command, and removing it would lock that controller out of this device"
            )
        if access_id == self._state.pinned_controller():
            raise TrustRefusedError(
                f"refusing to remove {access_id}: it is the controller CA this device enrolled "
                "with; revoke the device there (hwfleet keys reject) instead"
            )
        entries = self.entries()
        kept = [e for e in entries if e.access_id != access_id]
        if len(kept) == len(entries):
            raise TrustNotFoundError(f"{access_id} is not in this device's trust list")
        self._save(kept)
        return next(e for e in entries if e.access_id == access_id)

    def reset(self) -> list[TrustedKey]:
        """Keep only the caller and the pinned controller (``reset_acl``); returns the rest."""
        keep = {self.current(), self._state.pinned_controller()}
        entries = self.entries()
        self._save([e for e in entries if e.access_id in keep])
        return [e for e in entries if e.access_id not in keep]
