"""The per-source token bucket: burst, refill, separation of sources, bounded memory."""

from __future__ import annotations

import pytest

from hwfleet.trust.ratelimit import RateLimiter, source_key


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_burst_then_limited_then_refills() -> None:
    clock = FakeClock()
    limiter = RateLimiter(rate=5 / 60, burst=10, clock=clock)
    for _ in range(10):
        assert not limiter.limited("10.0.0.1")
        limiter.failure("10.0.0.1")
    assert limiter.limited("10.0.0.1")
    assert limiter.retry_after("10.0.0.1") == pytest.approx(12.0)
    assert not limiter.limited("10.0.0.2"), "another source is unaffected"
    clock.now += 11.9
    assert limiter.limited("10.0.0.1")
    clock.now += 0.2  # one token back after 12 s at 5/min
    assert not limiter.limited("10.0.0.1")
    limiter.failure("10.0.0.1")
    assert limiter.limited("10.0.0.1")


def test_memory_is_bounded_and_limited_sources_are_remembered() -> None:
    clock = FakeClock()
    limiter = RateLimiter(rate=0.001, burst=2, max_sources=3, clock=clock)
    limiter.failure("10.0.0.9")
    limiter.failure("10.0.0.9")  # limited, and the least recently used
    limiter.failure("10.0.0.1")
    limiter.failure("10.0.0.2")
    for n in range(3, 50):
        limiter.failure(f"10.0.1.{n}")
        assert len(limiter) <= 3
    assert limiter.limited("10.0.0.9")
    clock.now += 10_000  # everyone refilled: idle sources are the first to go
    limiter.failure("10.0.2.1")
    assert len(limiter) <= 3


def test_source_key_groups_ipv6_by_64_and_unmaps_ipv4() -> None:
    assert source_key("2001:db8::1") == source_key("2001:db8::ffff:1")
    assert source_key("2001:db8::1") != source_key("2001:db8:0:1::1")
    assert source_key("::ffff:10.1.2.3") == "10.1.2.3"
    assert source_key("fe80::1%eth0") == source_key("fe80::2")


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="rate must be"):
        RateLimiter(rate=0)


def test_reserve_queues_callers_one_interval_apart() -> None:
    now = [0.0]
    limiter = RateLimiter(rate=2.0, burst=2, clock=lambda: now[0])
    assert [limiter.reserve("10.0.0.1") for _ in range(2)] == [0.0, 0.0]
    # In debt: each further caller waits half a second longer than the one before.
    assert [limiter.reserve("10.0.0.1") for _ in range(3)] == [0.5, 1.0, 1.5]
    assert limiter.reserve("10.0.0.2") == 0.0
    now[0] = 10.0  # refilled, but never beyond the burst
    assert [limiter.reserve("10.0.0.1") for _ in range(3)] == [0.0, 0.0, 0.5]
