"""Rate limiting per source, replay rejection, probe target bounds, signing helpers."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from hwfleet.discovery import PacketRateLimiter, ReplayGuard, fingerprint, parse_targets, public_raw
from hwfleet.discovery.signing import raw_from_pem, verify
from hwfleet.trust.fingerprints import of_der


def test_rate_limiter_allows_a_burst_then_refills_at_the_rate() -> None:
    limiter = PacketRateLimiter(rate=2.0, burst=3)
    assert [limiter.allow("10.0.0.1", 100.0) for _ in range(5)] == [True, True, True, False, False]
    assert limiter.allow("10.0.0.2", 100.0), "another source has its own bucket"
    assert not limiter.allow("10.0.0.1", 100.4), "0.8 token after 0.4 s at 2/s"
    assert limiter.allow("10.0.0.1", 100.9)
    assert not limiter.allow("10.0.0.1", 100.9)


def test_rate_limiter_memory_is_bounded() -> None:
    limiter = PacketRateLimiter(rate=1.0, burst=1, max_sources=100)
    for i in range(1000):
        limiter.allow(f"10.0.{i // 256}.{i % 256}", 0.0)
    assert len(limiter) == 100


def test_replay_guard_accepts_once_within_the_window() -> None:
    guard = ReplayGuard(window=30.0)
    assert guard.check("a" * 32, 1000.0, 1000.0) is None
    reason = guard.check("a" * 32, 1000.0, 1001.0)
    assert reason is not None and "replay" in reason
    assert guard.check("b" * 32, 960.0, 1000.0) is not None, "40 s old is outside the window"
    assert guard.check("c" * 32, 1040.0, 1000.0) is not None, "40 s in the future too"


def test_replay_guard_remembers_a_future_dated_nonce_until_it_expires() -> None:
    guard = ReplayGuard(window=30.0)
    assert guard.check("d" * 32, 1029.0, 1000.0) is None
    # At 1045 the packet (ts 1029) is still inside the window: the nonce must still be known.
    reason = guard.check("d" * 32, 1029.0, 1045.0)
    assert reason is not None and "replay" in reason


def test_replay_guard_forgets_expired_nonces_and_is_bounded() -> None:
    guard = ReplayGuard(window=10.0, max_nonces=50)
    for i in range(200):
        guard.check(f"{i:032x}", 1000.0, 1000.0)
    assert len(guard) == 50
    guard.check("f" * 32, 2000.0, 2000.0)
    assert len(guard) == 1


def test_parse_targets_expands_bounds_and_refuses() -> None:
    assert parse_targets(["127.1.0.0/30"]) == ["127.1.0.1", "127.1.0.2"]
    assert parse_targets(["10.0.0.5", "10.0.0.4/31", "10.0.0.5"]) == [
        "10.0.0.5",
        "10.0.0.4",
    ]
    assert len(parse_targets(["127.1.0.0/22"])) == 1022
    assert len(parse_targets(["10.9.0.0/16"])) == 65534
    for bad, words in [
        ("10.0.0.0/15", "wider than /16"),
        ("nonsense", "not an IPv4"),
        ("::1", "IPv6"),
        ("239.255.255.250", "multicast"),
        ("255.255.255.255", "broadcast"),
    ]:
        with pytest.raises(ValueError, match=words):
            parse_targets([bad])
    with pytest.raises(ValueError, match="more than"):
        parse_targets(["10.1.0.0/16", "10.2.0.0/16"])


def test_fingerprint_matches_the_trust_format_and_pem_round_trips() -> None:
    key = Ed25519PrivateKey.generate()
    spki = key.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    assert fingerprint(public_raw(key)) == of_der(spki)
    pem = key.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    assert raw_from_pem(pem) == public_raw(key)


def test_verify_never_raises_on_garbage() -> None:
    key = Ed25519PrivateKey.generate()
    sig = key.sign(b"data")
    assert verify(public_raw(key), sig, b"data")
    assert not verify(public_raw(key), sig, b"Data")
    assert not verify(b"short", sig, b"data")
    assert not verify(public_raw(key), sig[:10], b"data")
    assert not verify(bytes(32), bytes(64), b"data")
