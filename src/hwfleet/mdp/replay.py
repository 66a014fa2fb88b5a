"""The nonce cache: a v2 datagram is accepted once, within the timestamp window.

Bounded: a nonce is kept only as long as its datagram could still pass the window
check, and when the cache is full of live nonces new datagrams are refused (counted
``busy``) rather than evicting one that could then be replayed.
"""

from __future__ import annotations

from collections import OrderedDict

from hwfleet.mdp.wire import WINDOW


class NonceCache:
    def __init__(self, capacity: int = 65536, window: float = WINDOW) -> None:
        self._seen: OrderedDict[str, float] = OrderedDict()
        self.capacity = capacity
        # A nonce must outlive every timestamp that could still be accepted with it.
        self.keep = 2 * window + 1

    def _expire(self, now: float) -> None:
        while self._seen:
            nonce, at = next(iter(self._seen.items()))
            if now - at <= self.keep:
                break
            del self._seen[nonce]

    def admit(self, nonce: str, now: float) -> str | None:
        """None when the nonce is new (and now remembered), else ``replay`` or ``busy``."""
        self._expire(now)
        if nonce in self._seen:
            return "replay"
        if len(self._seen) >= self.capacity:
            return "busy"
        self._seen[nonce] = now
        return None

    def __len__(self) -> int:
        return len(self._seen)
