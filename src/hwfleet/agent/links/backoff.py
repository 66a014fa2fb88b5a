"""Jittered exponential backoff with a cap, for reconnect loops."""

from __future__ import annotations

import os
from typing import Protocol


class Jitter(Protocol):
    """What a delay is drawn with: ``random.Random`` in tests, :class:`SystemJitter` in use."""

    def random(self) -> float: ...


class SystemJitter:
    """Uniform floats in [0, 1) from ``os.urandom``: the agent spreads its retries without
    importing :mod:`random`, which would stay resident (issue 18's memory budget)."""

    def random(self) -> float:
        return int.from_bytes(os.urandom(7), "little") / (1 << 56)


class Backoff:
    """``next()`` gives the delay before the next attempt; ``reset()`` after a success.

    Full jitter (a random delay between 0 and the current ceiling) keeps a
    fleet that lost its controller at once from reconnecting at once.
    """

    def __init__(self, minimum: float, maximum: float, rng: Jitter | None = None) -> None:
        if minimum <= 0 or maximum < minimum:
            raise ValueError("backoff needs 0 < minimum <= maximum")
        self.minimum = minimum
        self.maximum = maximum
        self._ceiling = minimum
        self._rng = rng or SystemJitter()

    def next(self) -> float:
        delay = self.minimum / 2 + self._rng.random() * (self._ceiling - self.minimum / 2)
        self._ceiling = min(self.maximum, self._ceiling * 2)
        return delay

    def reset(self) -> None:
        self._ceiling = self.minimum

    def spread(self, window: float) -> None:
        """Draw the next delay from up to ``window`` seconds (never past the maximum).

        After a link that was up ends — the controller restarted — every device of
        the fleet lost it at the same instant; starting from the minimum they would
        all knock within half a second. Spread over a few seconds, ten thousand
        arrive at a rate the controller's connect path takes without refusals.
        """
        self._ceiling = max(self._ceiling, min(self.maximum, window))
