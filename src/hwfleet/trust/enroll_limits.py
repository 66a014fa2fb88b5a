"""Caps on what the shared enrollment password can admit (issue 21, Low 7).

The password is shared and long-lived, so whoever learns it could enroll
devices without end. Two caps bound that:

* per source address (IPv4, IPv6 /64): at most ``per_source`` password
  enrollments in any ``window`` seconds (a sliding window);
* per fleet: no password enrollment once ``fleet_limit`` devices hold an
  accepted key (0: no limit).

Tokens (``hwfleet keys token``) and operator decisions are not capped: they
are the way to admit many devices at once. The refusal says which limit was
hit, the setting that raises it, and when to retry.
"""

from __future__ import annotations

import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass

from hwfleet.trust.ratelimit import source_key


@dataclass(frozen=True, slots=True)
class PasswordCaps:
    """The settings: ``enroll_password_per_source``, ``…_window``, ``…_fleet_limit``."""

    per_source: int = 20
    window: float = 3600.0
    fleet_limit: int = 10_000

    def __post_init__(self) -> None:
        if self.per_source < 1 or self.window <= 0 or self.fleet_limit < 0:
            raise ValueError("per_source >= 1, window > 0 and fleet_limit >= 0 are required")


class WindowCounter:
    """Events per source in a sliding window; memory bounded by ``max_sources``."""

    def __init__(
        self,
        limit: int,
        window: float,
        *,
        max_sources: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limit = limit
        self.window = window
        self._max = max_sources
        self._clock = clock
        self._seen: OrderedDict[str, deque[float]] = OrderedDict()

    def _recent(self, key: str) -> deque[float] | None:
        times = self._seen.get(key)
        if times is None:
            return None
        horizon = self._clock() - self.window
        while times and times[0] <= horizon:
            times.popleft()
        if not times:
            del self._seen[key]
            return None
        return times

    def retry_after(self, source: str) -> float:
        """0 when ``source`` is under the limit, else seconds until its oldest event expires."""
        times = self._recent(source_key(source))
        if times is None or len(times) < self.limit:
            return 0.0
        return max(0.0, times[0] + self.window - self._clock())

    def add(self, source: str) -> None:
        key = source_key(source)
        times = self._recent(key)
        if times is None:
            if len(self._seen) >= self._max:
                self._seen.popitem(last=False)  # the source idle the longest
            times = self._seen[key] = deque(maxlen=self.limit)
        times.append(self._clock())
        self._seen.move_to_end(key)

    def __len__(self) -> int:
        return len(self._seen)


def source_cap_message(source_ip: str, caps: PasswordCaps, wait: float) -> str:
    return (
        f"password enrollments from {source_ip} reached the limit of {caps.per_source} per "
        f"{caps.window:g} s (enroll_password_per_source): retry in {max(1.0, wait):.0f} s, "
        "or enroll with a token (hwfleet keys token)"
    )


def fleet_cap_message(caps: PasswordCaps) -> str:
    return (
        f"the fleet has reached {caps.fleet_limit} devices, the limit for password enrollment "
        "(enroll_password_fleet_limit): enroll with a token (hwfleet keys token), or retry once "
        "an operator raises the limit or deletes unused keys"
    )
