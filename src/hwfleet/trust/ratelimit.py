"""Per-source token buckets for enrollment attempts (DESIGN §6).

Each source address has a bucket of ``burst`` tokens refilled at ``rate`` per
second. A failed attempt takes a token; an empty bucket means the source is
limited and its next requests are refused before any secret is looked at, so
guessing runs at most ``rate`` tries per second per address, whatever the
attacker sends. Memory is bounded: at most ``max_sources`` buckets are kept,
and full buckets (sources that have not failed lately) are forgotten first.
"""

from __future__ import annotations

import ipaddress
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(slots=True)
class _Bucket:
    tokens: float
    updated: float


def source_key(address: str) -> str:
    """Bucket key for an address: IPv4 as is, IPv6 by /64 (one host owns a whole /64)."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


class RateLimiter:
    """Token buckets keyed by source; default 5 failures per minute, burst 10."""

    def __init__(
        self,
        *,
        rate: float = 5 / 60,
        burst: int = 10,
        max_sources: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if rate <= 0 or burst < 1 or max_sources < 1:
            raise ValueError("rate must be > 0, burst and max_sources >= 1")
        self.rate = rate
        self.burst = burst
        self._max = max_sources
        self._clock = clock
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()

    def _refill(self, key: str) -> _Bucket | None:
        bucket = self._buckets.get(key)
        if bucket is None:
            return None
        now = self._clock()
        bucket.tokens = min(self.burst, bucket.tokens + (now - bucket.updated) * self.rate)
        bucket.updated = now
        return bucket

    def limited(self, source: str) -> bool:
        """True when ``source`` has used up its failures and must wait."""
        bucket = self._refill(source_key(source))
        return bucket is not None and bucket.tokens < 1

    def _charged(self, source: str) -> _Bucket:
        """The source's bucket (a full new one if none), marked most recently used."""
        key = source_key(source)
        bucket = self._refill(key)
        if bucket is None:
            self._make_room()
            bucket = self._buckets[key] = _Bucket(float(self.burst), self._clock())
        self._buckets.move_to_end(key)
        return bucket

    def failure(self, source: str) -> None:
        """Charge one failed attempt to ``source``."""
        bucket = self._charged(source)
        bucket.tokens = max(0.0, bucket.tokens - 1)

    def reserve(self, source: str) -> float:
        """Take one token, in advance if need be; return the seconds to wait for it.

        The bucket may go into debt, so concurrent callers queue up one token
        interval apart instead of all waking together when the bucket refills.
        """
        bucket = self._charged(source)
        bucket.tokens -= 1
        return 0.0 if bucket.tokens >= 0 else -bucket.tokens / self.rate

    def retry_after(self, source: str) -> float:
        """Seconds until ``source`` may try again (0 when it may now)."""
        bucket = self._refill(source_key(source))
        if bucket is None or bucket.tokens >= 1:
            return 0.0
        return (1 - bucket.tokens) / self.rate

    def _make_room(self) -> None:
        if len(self._buckets) < self._max:
            return
        for key in list(self._buckets):
            bucket = self._refill(key)
            if bucket is not None and bucket.tokens >= self.burst:
                del self._buckets[key]
        if len(self._buckets) >= self._max:
            # Still full: forget the source closest to a full bucket (the oldest among
            # equals), so the sources that are actually limited are remembered longest.
            key = max(self._buckets, key=lambda k: self._buckets[k].tokens)
            del self._buckets[key]

    def __len__(self) -> int:
        return len(self._buckets)
