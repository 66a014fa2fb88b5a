"""The sliding-window counter behind the password-enrollment caps."""

from __future__ import annotations

import pytest

from hwfleet.trust.enroll_limits import PasswordCaps, WindowCounter


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_sliding_window_counts_per_source_and_says_when_to_retry() -> None:
    clock = Clock()
    counter = WindowCounter(3, 60.0, clock=clock)
    for _ in range(3):
        assert counter.retry_after("10.0.0.1") == 0
        counter.add("10.0.0.1")
        clock.now += 10
    # Full: the oldest (t=100) leaves the window at t=160; it is t=130 now.
    assert counter.retry_after("10.0.0.1") == pytest.approx(30.0)
    assert counter.retry_after("10.0.0.2") == 0
    # One IPv6 host owns its /64: another address in it shares the count.
    for _ in range(3):
        counter.add("2001:db8::1")
    assert counter.retry_after("2001:db8::ffff") > 0
    clock.now = 160.5
    assert counter.retry_after("10.0.0.1") == 0


def test_memory_is_bounded_and_idle_sources_are_forgotten() -> None:
    clock = Clock()
    counter = WindowCounter(1, 60.0, max_sources=100, clock=clock)
    for n in range(1000):
        counter.add(f"10.1.{n // 256}.{n % 256}")
    assert len(counter) == 100
    assert counter.retry_after("10.1.3.231") > 0  # the newest is remembered
    clock.now += 61
    assert counter.retry_after("10.1.3.231") == 0
    assert len(counter) == 99  # an expired source is dropped when looked at


def test_caps_refuse_nonsense() -> None:
    with pytest.raises(ValueError):
        PasswordCaps(per_source=0)
    with pytest.raises(ValueError):
        PasswordCaps(fleet_limit=-1)
