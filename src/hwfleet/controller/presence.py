"""Presence that holds with any number of controller replicas: the liveness rule.

With RabbitMQ, a device's heartbeats land on the shared ``agent.inbound`` work
queue, so each replica handles only some of them. Presence therefore lives in
the store, not in a replica's memory:

- every replica records ``last_seen`` for the heartbeats it handles, in
  batches (two round trips per flush, whatever the fleet size);
- a device is online while its row says ``online`` and its ``last_seen`` is
  within the window (``offline_after``, by default three heartbeat intervals);
  listings and a scan's expected set apply that same rule;
- the transition to offline is one conditional UPDATE which every replica runs
  and only one wins per device, so each transition has exactly one event.

A stream device is connected to exactly one replica; that replica alone hears
its heartbeats, records them, and marks it offline when its socket closes —
unless it has meanwhile been recorded by another replica it reconnected to.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime, timedelta

from hwfleet.controller.events import utcnow


@dataclass(frozen=True, slots=True)
class LivenessRule:
    """Online while last seen within ``window`` seconds."""

    window: float

    def stale_before(self, now: datetime | None = None) -> datetime:
        """Devices last seen before this instant are offline."""
        return (now or utcnow()) - timedelta(seconds=self.window)

    @property
    def sweep_interval(self) -> float:
        """How often a replica flushes heartbeats and expires silent devices.

        A third of the window: a heartbeat reaches the store well inside it.
        """
        return max(0.2, min(5.0, self.window / 3))


class Heartbeats:
    """Heartbeats this replica handled since its last flush, by device."""

    __slots__ = ("_pending",)

    def __init__(self) -> None:
        self._pending: dict[str, float] = {}  # uuid -> time.monotonic() of the latest

    def note(self, uuid: str) -> None:
        self._pending[uuid] = time.monotonic()

    def __bool__(self) -> bool:
        return bool(self._pending)

    def take(self) -> dict[str, datetime]:
        """Empty the book: when each device's latest heartbeat arrived.

        Recording the arrival time (not the flush time) keeps ``last_seen`` honest: a
        replica flushing late never stamps a device later than it really spoke.
        """
        pending, self._pending = self._pending, {}
        wall, mono = utcnow(), time.monotonic()
        return {uuid: wall - timedelta(seconds=mono - at) for uuid, at in pending.items()}
