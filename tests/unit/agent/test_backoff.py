"""Reconnect delays: jittered, growing to a cap, and spread after a lost link."""

from __future__ import annotations

import random

from hwfleet.agent.links.backoff import Backoff


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
