"""Abuse guards for the UDP endpoints: per-source token buckets and a replay cache.

Both are bounded in memory whatever the traffic: the rate limiter forgets the least
recently seen source past ``max_sources``; the replay guard keeps nonces only for
the acceptance window and at most ``max_nonces`` of them.
"""

from __future__ import annotations

import math
from collections import OrderedDict


class PacketRateLimiter:
    """A token bucket per source address: ``rate`` tokens/s, holding at most ``burst``."""

    def __init__(self, rate: float = 10.0, burst: float = 20.0, max_sources: int = 4096) -> None:
        if rate <= 0 or burst < 1 or max_sources < 1:
            raise ValueError("rate must be > 0, burst >= 1 and max_sources >= 1")
        self.rate = rate
        self.burst = burst
        self.max_sources = max_sources
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def allow(self, source: str, now: float) -> bool:
        """Take one token for ``source``; False when its bucket is empty."""
        tokens, last = self._buckets.pop(source, (self.burst, now))
        tokens = min(self.burst, tokens + max(0.0, now - last) * self.rate)
        allowed = tokens >= 1.0
        if allowed:
            tokens -= 1.0
        self._buckets[source] = (tokens, now)
        while len(self._buckets) > self.max_sources:
            self._buckets.popitem(last=False)
        return allowed

    def __len__(self) -> int:
        return len(self._buckets)


class ReplayGuard:
    """Accepts a (nonce, timestamp) pair once, and only within ``window`` seconds of now."""

    def __init__(self, window: float = 30.0, max_nonces: int = 65536) -> None:
        if window <= 0 or max_nonces < 1:
            raise ValueError("window must be > 0 and max_nonces >= 1")
        self.window = window
        self.max_nonces = max_nonces
        self._seen: OrderedDict[str, float] = OrderedDict()

    def check(self, nonce: str, ts: float, now: float) -> str | None:
        """None if fresh (and remember it), else the reason it is rejected."""
        if not math.isfinite(ts) or abs(now - ts) > self.window:
            return f"timestamp {ts:.3f} is outside the ±{self.window:g} s window around {now:.3f}"
        self._expire(now)
        if nonce in self._seen:
            return f"nonce {nonce} was already seen (replay)"
        # A future-dated packet stays replayable until ts + window, so remember it that long.
        self._seen[nonce] = max(now, ts) + self.window
        while len(self._seen) > self.max_nonces:
            self._seen.popitem(last=False)
        return None

    def _expire(self, now: float) -> None:
        # Expiries are nearly in insertion order; an entry left behind a later-expiring one
        # only costs memory until it reaches the front, never a wrongly accepted replay.
        while self._seen:
            nonce, expiry = next(iter(self._seen.items()))
            if expiry > now:
                break
            del self._seen[nonce]

    def __len__(self) -> int:
        return len(self._seen)
