"""Registry: verification against enrolled keys, spoof flags, TOFU, IP moves, ageing."""

from __future__ import annotations

import dataclasses

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from hwfleet.discovery import Packet, PacketType, Registry, build_advert, parse, public_raw
from hwfleet.discovery.metadata import DeviceMetadata
from hwfleet.discovery.responder import advert_from
from hwfleet.discovery.signing import fingerprint

from .conftest import make_meta

UUID = make_meta().uuid


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def packet(meta: DeviceMetadata, key: Ed25519PrivateKey | None, limit: int = 1200) -> Packet:
    data = build_advert(PacketType.ANNOUNCE, advert_from(meta, nonce="cd" * 16, ts=1.0), key, limit)
    assert data is not None
    return parse(data)


def test_enrolled_device_is_trusted_and_a_forgery_is_flagged_without_overwriting() -> None:
    good = Ed25519PrivateKey.generate()
    registry = Registry(known_keys={UUID: public_raw(good)}.get)
    first = registry.observe(packet(make_meta(), good), "127.1.0.1")
    assert first is not None and first.event == "new"
    assert first.trusted and first.enrolled and first.signed and not first.spoofed

    forged = make_meta(name="evil", ipaddr="127.9.9.9")
    for key, reason in [
        (Ed25519PrivateKey.generate(), "does not verify"),
        (None, "unsigned"),
    ]:
        update = registry.observe(packet(forged, key), "127.9.9.9")
        assert update is not None and update.event == "spoofed"
        assert update.spoofed and reason in (update.spoof_reason or "")
        assert update.spoof_source == "127.9.9.9"
        assert update.metadata.name == "rack-1" and update.metadata.ipaddr == "127.1.0.1"
        assert update.source == "127.1.0.1"
    assert registry.counters["spoofed"] == 2


def test_unenrolled_device_with_two_keys_is_a_conflict_that_blames_neither() -> None:
    registry = Registry()
    key = Ed25519PrivateKey.generate()
    assert registry.observe(packet(make_meta(), key), "127.1.0.1")
    update = registry.get(UUID)
    assert update is not None and update.signed and not update.trusted and not update.enrolled
    assert not update.conflict and update.to_json()["claims"] == []
    other = registry.observe(
        packet(make_meta(name="x"), Ed25519PrivateKey.generate()),
        "127.1.0.2",
    )
    assert other is not None and other.event == "conflict" and other.conflict
    assert not other.spoofed and other.fingerprint is None and not other.signed
    assert {c.source for c in other.claims} == {"127.1.0.1", "127.1.0.2"}
    unsigned = registry.observe(packet(make_meta(), None), "127.1.0.3")
    assert unsigned is not None and unsigned.conflict and not unsigned.spoofed
    assert [c.fingerprint for c in unsigned.claims][2] is None
    assert len(unsigned.to_json()["claims"]) == 3
    assert registry.counters["conflicts"] == 2 and registry.counters["spoofed"] == 0


def test_unsigned_first_then_signed_is_a_conflict() -> None:
    registry = Registry()
    assert registry.observe(packet(make_meta(name="spoof"), None), "127.1.0.66")
    real = registry.observe(packet(make_meta(), Ed25519PrivateKey.generate()), "127.1.0.1")
    assert real is not None and real.conflict and not real.spoofed


def test_known_fingerprint_decides_like_a_known_key() -> None:
    good, evil = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    registry = Registry(known_keys={UUID: fingerprint(public_raw(good))}.get)
    spoof = registry.observe(packet(make_meta(name="evil"), evil), "127.1.0.66")
    assert spoof is not None and spoof.spoofed and spoof.spoof_source == "127.1.0.66"
    unsigned = registry.observe(packet(make_meta(name="evil"), None), "127.1.0.66")
    assert unsigned is not None and "unsigned" in (unsigned.spoof_reason or "")
    real = registry.observe(packet(make_meta(), good), "127.1.0.1")
    assert real is not None and real.trusted and real.metadata.name == "rack-1"
    assert real.fingerprint == fingerprint(public_raw(good)) and not real.conflict


def test_unsigned_device_before_enrollment_is_listed_as_unsigned() -> None:
    registry = Registry(known_keys=lambda _uuid: None)
    update = registry.observe(packet(make_meta(), None), "127.1.0.1")
    assert update is not None and not update.signed and not update.spoofed
    assert update.fingerprint is None and update.to_json()["signed"] is False


def test_bad_self_signature_is_dropped_and_key_lookup_failure_fails_closed() -> None:
    key = Ed25519PrivateKey.generate()
    p = packet(make_meta(), key)
    tampered = dataclasses.replace(p, signature=bytes(64))
    registry = Registry()
    assert registry.observe(tampered, "127.1.0.1") is None
    assert registry.counters["bad_signature"] == 1 and len(registry) == 0

    def broken(_uuid: str) -> bytes | None:
        raise RuntimeError("store down")

    registry = Registry(known_keys=broken)
    assert registry.observe(p, "127.1.0.1") is None
    assert registry.counters["key_lookup_error"] == 1


def test_device_that_changes_address_keeps_identity_and_history() -> None:
    key = Ed25519PrivateKey.generate()
    registry = Registry(known_keys={UUID: public_raw(key)}.get)
    registry.observe(packet(make_meta(1), key), "127.1.0.1")
    moved = registry.observe(
        packet(make_meta(1, ipaddr="127.1.0.77"), key),
        "127.1.0.77",
    )
    assert moved is not None and moved.event == "moved" and not moved.spoofed
    assert moved.metadata.ipaddr == "127.1.0.77"
    assert [h.ipaddr for h in moved.history] == ["127.1.0.1", "127.1.0.77"]
    assert len(registry) == 1


def test_state_ages_online_stale_offline() -> None:
    clock = Clock()
    registry = Registry(max_age=10.0, clock=clock)
    registry.observe(packet(make_meta(), None), "127.1.0.1")
    assert registry.devices()[0].state == "online"
    assert registry.age() == []
    clock.now = 10.5
    changed = registry.age()
    assert [(c.state, c.event) for c in changed] == [("stale", "state")]
    assert registry.age() == [], "reported once per change"
    clock.now = 25.0
    assert [c.state for c in registry.age()] == ["offline"]
    registry.observe(packet(make_meta(), None), "127.1.0.1")
    assert registry.devices()[0].state == "online"


def test_spoof_only_record_is_never_online() -> None:
    key = Ed25519PrivateKey.generate()
    registry = Registry(known_keys={UUID: public_raw(key)}.get)
    update = registry.observe(packet(make_meta(), None), "127.9.9.9")
    assert update is not None and update.spoofed and update.state == "offline"


def test_truncated_reply_keeps_known_descriptive_fields() -> None:
    key = Ed25519PrivateKey.generate()
    registry = Registry()
    registry.observe(packet(make_meta(), key), "127.1.0.1")
    big = make_meta(name="n" * 128, model_id="m" * 128, version="v" * 128, st_id=16)
    small = packet(big, key, limit=600)
    assert small.truncated
    update = registry.observe(small, "127.1.0.1")
    assert update is not None and update.truncated and update.metadata.st_id == 16
    assert update.metadata.name == "rack-1"
