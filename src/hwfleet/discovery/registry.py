"""What a browser knows: one record per device uuid, verified, aged, never overwritten by a spoof.

A packet for an enrolled uuid must carry a valid signature by the enrolled key (known
as the key itself or as its fingerprint); a packet that does not is flagged
``spoofed`` on the record (with the reason and the source it came from) and its
contents are discarded. For a uuid not enrolled nobody knows which key is genuine, so
the first one seen is not trusted over later ones: when packets for one uuid come
with different keys (or signed and unsigned), the record is marked ``conflict`` and
lists every claim with its source, blaming none. State follows the age of the last
good packet: online up to ``max_age`` seconds, stale up to twice that, then offline.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import msgspec

from hwfleet.discovery.metadata import DeviceMetadata
from hwfleet.discovery.packets import AdvertBody, Packet, public_key_of
from hwfleet.discovery.signing import fingerprint, verify

log = logging.getLogger(__name__)

#: uuid → its enrolled key: raw Ed25519 bytes, or the key's fingerprint (``SHA256:…``)
#: when only that is known (e.g. from the controller's API); None if not enrolled.
KnownKeys = Callable[[str], bytes | str | None]
HISTORY_LIMIT = 16


class AddressChange(msgspec.Struct, frozen=True):
    """One address a device was seen at, and when."""

    ipaddr: str
    first_seen: float
    last_seen: float


class KeyClaim(msgspec.Struct, frozen=True):
    """One key a uuid was announced with (None: unsigned), and where it came from."""

    fingerprint: str | None
    source: str
    last_seen: float


class Discovered(msgspec.Struct, frozen=True, kw_only=True):
    """A snapshot of one device as a browser sees it; ``event`` says what just changed."""

    metadata: DeviceMetadata
    fingerprint: str | None
    signed: bool
    trusted: bool
    enrolled: bool
    spoofed: bool
    spoof_reason: str | None
    spoof_source: str | None
    state: str
    source: str | None
    last_seen: float | None
    truncated: bool
    history: tuple[AddressChange, ...]
    event: str
    #: Not enrolled, and announced with more than one key: ``claims`` lists them all.
    conflict: bool = False
    claims: tuple[KeyClaim, ...] = ()

    def to_json(self) -> dict[str, Any]:
        """DESIGN §7 metadata plus fingerprint, signed, spoofed, state and provenance."""
        doc: dict[str, Any] = msgspec.to_builtins(self.metadata)
        doc.update(
            fingerprint=self.fingerprint,
            signed=self.signed,
            trusted=self.trusted,
            enrolled=self.enrolled,
            spoofed=self.spoofed,
            spoof_reason=self.spoof_reason,
            spoof_source=self.spoof_source,
            state=self.state,
            source=self.source,
            last_seen=self.last_seen,
            truncated=self.truncated,
            history=msgspec.to_builtins(self.history),
            conflict=self.conflict,
            claims=msgspec.to_builtins(list(self.claims)),
        )
        return doc


class _Record:
    __slots__ = (
        "claims",
        "conflict",
        "enrolled",
        "fingerprint",
        "history",
        "last_good",
        "last_seen_wall",
        "metadata",
        "signed",
        "source",
        "spoof_reason",
        "spoof_source",
        "spoofed",
        "state",
        "truncated",
        "trusted",
    )

    def __init__(self, metadata: DeviceMetadata) -> None:
        self.metadata = metadata
        self.fingerprint: str | None = None
        self.signed = False
        self.trusted = False
        self.enrolled = False
        self.spoofed = False
        self.spoof_reason: str | None = None
        self.spoof_source: str | None = None
        self.source: str | None = None
        self.last_good: float | None = None
        self.last_seen_wall: float | None = None
        self.truncated = False
        self.history: list[AddressChange] = []
        self.state = "offline"
        self.conflict = False
        self.claims: dict[str | None, KeyClaim] = {}


def metadata_of(body: AdvertBody, source: str, previous: DeviceMetadata | None) -> DeviceMetadata:
    ipaddr = body.ipaddr or source
    meta = DeviceMetadata(
        uuid=body.uuid,
        name=body.name,
        serial=body.serial,
        model_id=body.model_id,
        version=body.version,
        ipaddr=ipaddr,
        endpoint=body.endpoint if body.endpoint is not None else (ipaddr, 0),
        st_id=body.st_id,
        st_ts=body.st_ts,
        st_prog=body.st_prog,
        head_module=body.head_module,
        error_label=body.error_label,
    )
    if previous is not None and not (body.name or body.model_id or body.version):
        # A truncated packet drops the descriptive fields: keep what we already know.
        meta.name, meta.serial = previous.name, previous.serial
        meta.model_id, meta.version = previous.model_id, previous.version
    return meta


class Registry:
    """Device records keyed by uuid."""

    def __init__(
        self,
        *,
        known_keys: KnownKeys | None = None,
        max_age: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        if max_age <= 0:
            raise ValueError("max_age must be positive")
        self.known_keys = known_keys
        self.max_age = max_age
        self._clock = clock
        self._wall = wall
        self._records: dict[str, _Record] = {}
        self.counters: Counter[str] = Counter()

    def __len__(self) -> int:
        return len(self._records)

    def state_of(self, record: _Record) -> str:
        if record.last_good is None:
            return "offline"
        age = self._clock() - record.last_good
        if age <= self.max_age:
            return "online"
        return "stale" if age <= 2 * self.max_age else "offline"

    def snapshot(self, uuid: str, event: str = "") -> Discovered:
        r = self._records[uuid]
        r.state = self.state_of(r)
        return Discovered(
            metadata=msgspec.structs.replace(r.metadata),
            fingerprint=r.fingerprint,
            signed=r.signed,
            trusted=r.trusted,
            enrolled=r.enrolled,
            spoofed=r.spoofed,
            spoof_reason=r.spoof_reason,
            spoof_source=r.spoof_source,
            state=r.state,
            source=r.source,
            last_seen=r.last_seen_wall,
            truncated=r.truncated,
            history=tuple(r.history),
            event=event,
            conflict=r.conflict,
            claims=tuple(r.claims.values()) if r.conflict else (),
        )

    def devices(self) -> list[Discovered]:
        return [self.snapshot(uuid) for uuid in sorted(self._records)]

    def get(self, uuid: str) -> Discovered | None:
        return self.snapshot(uuid) if uuid in self._records else None

    def age(self) -> list[Discovered]:
        """Snapshots of the records whose state changed since they were last looked at."""
        changed = []
        for uuid, record in self._records.items():
            if self.state_of(record) != record.state:
                changed.append(self.snapshot(uuid, "state"))
        return changed

    def observe(self, packet: Packet, source: str) -> Discovered | None:
        """Take in a reply/announcement already checked for freshness; None if dropped."""
        body = packet.body
        if not isinstance(body, AdvertBody):
            return None
        record = self._records.get(body.uuid)
        verdict = self._verify(packet, body, record)
        if verdict is None:
            return None
        spoof, fp, trusted, enrolled = verdict
        if spoof is not None:
            return self._flag(body, source, record, spoof)
        now, wall = self._clock(), self._wall()
        if not enrolled and record is not None and record.claims and fp not in record.claims:
            return self._conflict(record, fp, source, now)
        event = "updated"
        if record is None:
            record = self._records[body.uuid] = _Record(metadata_of(body, source, None))
            event = "new"
        elif not record.conflict:
            record.metadata = metadata_of(body, source, record.metadata)
        if enrolled:
            record.claims.clear()  # the enrolled key decides; earlier claims are moot
            record.conflict = False
        else:
            record.claims[fp] = KeyClaim(fp, source, now)
        if record.conflict:
            # Keep it listed and aged, but take no side: no fingerprint, no trust.
            record.last_good, record.last_seen_wall = now, wall
            return self.snapshot(body.uuid, "updated")
        if self._track_address(record, record.metadata.ipaddr, wall) and event != "new":
            event = "moved"
        record.fingerprint = fp
        record.signed = packet.signed
        record.trusted = trusted
        record.enrolled = enrolled
        record.source = source
        record.last_good = now
        record.last_seen_wall = wall
        record.truncated = packet.truncated
        self.counters["accepted"] += 1
        return self.snapshot(body.uuid, event)

    def _verify(
        self, packet: Packet, body: AdvertBody, record: _Record | None
    ) -> tuple[str | None, str | None, bool, bool] | None:
        """(spoof reason or None, fingerprint, trusted, enrolled), or None to drop silently."""
        try:
            known = self.known_keys(body.uuid) if self.known_keys is not None else None
        except Exception:
            # Failing open here would let anyone speak for an enrolled device.
            self.counters["key_lookup_error"] += 1
            log.exception("known-key lookup failed for %s", body.uuid)
            return None
        carried = public_key_of(body)
        if isinstance(known, str):  # only the fingerprint is known: the carried key must match
            if packet.signature is not None and (carried is None or fingerprint(carried) != known):
                return "signed with a key other than the enrolled one", None, False, True
            known = carried if carried is not None else b""
        if known is not None:
            if packet.signature is None:
                return "unsigned packet for an enrolled device", None, False, True
            if not verify(known, packet.signature, packet.signed_part):
                return "signature does not verify against the enrolled key", None, False, True
            return None, fingerprint(known), True, True
        if packet.signature is not None and (
            carried is None or not verify(carried, packet.signature, packet.signed_part)
        ):
            self.counters["bad_signature"] += 1
            return None
        fp = body.fp if packet.signature is not None else None
        return None, fp, False, False

    def _conflict(self, record: _Record, fp: str | None, source: str, now: float) -> Discovered:
        """A uuid not enrolled, announced with another key: list both, trust neither."""
        self.counters["conflicts"] += 1
        log.warning(
            "conflicting discovery claims for %s: %s from %s, but also %s",
            record.metadata.uuid,
            fp or "unsigned",
            source,
            ", ".join(
                f"{c.fingerprint or 'unsigned'} from {c.source}" for c in record.claims.values()
            ),
        )
        record.claims[fp] = KeyClaim(fp, source, now)
        record.conflict = True
        record.fingerprint = None
        record.signed = record.trusted = False
        return self.snapshot(record.metadata.uuid, "conflict")

    def _flag(
        self, body: AdvertBody, source: str, record: _Record | None, reason: str
    ) -> Discovered:
        self.counters["spoofed"] += 1
        log.warning("spoofed discovery packet for %s from %s: %s", body.uuid, source, reason)
        if record is None:
            # Nothing good to protect: keep the claim visible, but it never counts as seen.
            record = self._records[body.uuid] = _Record(metadata_of(body, source, None))
        record.spoofed = True
        record.spoof_reason = reason
        record.spoof_source = source
        return self.snapshot(body.uuid, "spoofed")

    @staticmethod
    def _track_address(record: _Record, ipaddr: str, wall: float) -> bool:
        """Extend the current address entry, or start a new one (True: the device moved)."""
        history = record.history
        if history and history[-1].ipaddr == ipaddr:
            history[-1] = AddressChange(ipaddr, history[-1].first_seen, wall)
            return False
        history.append(AddressChange(ipaddr, wall, wall))
        del history[:-HISTORY_LIMIT]
        return True
