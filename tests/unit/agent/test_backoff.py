"""Reconnect delays: jittered, growing to a cap, and spread after a lost link."""

from __future__ import annotations

import random

from hwfleet.agent.links.backoff import Backoff, SystemJitter


def test_delays_grow_to_the_cap_and_reset() -> None:
    backoff = Backoff(0.5, 4.0, random.Random(1))
    delays = [backoff.next() for _ in range(8)]
    assert all(0.25 <= d <= 4.0 for d in delays)
    assert max(delays[:1]) <= 0.5 and max(delays[4:]) > 0.5
    backoff.reset()
    assert backoff.next() <= 0.5


def test_a_fleet_that_lost_its_link_spreads_its_first_reconnects() -> None:
    # A thousand devices lose the controller at the same instant.
    fleet = [Backoff(0.5, 30.0, random.Random(seed)) for seed in range(1000)]
    for device in fleet:
        device.spread(5.0)
    delays = sorted(device.next() for device in fleet)
    assert delays[0] >= 0.25 and delays[-1] <= 5.0
    # Spread over the window, not bunched within the first half second.
    assert sum(d <= 0.5 for d in delays) < 100
    assert sum(d > 2.5 for d in delays) > 400
    # Never past the maximum, and a wider window than the current ceiling only.
    small = Backoff(0.5, 2.0, random.Random(2))
    small.spread(5.0)
    assert all(small.next() <= 2.0 for _ in range(20))


def test_the_default_jitter_is_uniform_in_the_unit_interval() -> None:
    """What a real agent draws with (os.urandom, no random module): the fleet-spreading
    properties above hold for it too."""
    draws = [SystemJitter().random() for _ in range(4000)]
    assert all(0.0 <= d < 1.0 for d in draws)
    # Each tenth of the interval gets its share (400 expected; far outside 300-500 only
    # if the draws are not uniform).
    assert all(300 < sum(k / 10 <= d < (k + 1) / 10 for d in draws) < 500 for k in range(10))
    fleet = [Backoff(0.5, 30.0) for _ in range(1000)]
    for device in fleet:
        device.spread(5.0)
    assert sum(device.next() > 2.5 for device in fleet) > 400
