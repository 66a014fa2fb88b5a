"""Scan events onto the bus, off the write path, in the order operators need them.

A row is committed before its event is queued here; publishing one event at a time would cap
a big scan at the broker's confirm latency and cost a publish's CPU per device, so what has
accumulated is published together, in order — a scan's ``scan.finished`` after its devices'
events.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from hwfleet.controller.events import EventPublisher
    from hwfleet.store import EventRecord

#: At most this many events in flight to the broker at once.
CHUNK = 1000


class ScanAnnouncer:
    """Queue committed events with :meth:`announce`; :meth:`start` publishes them."""

    def __init__(self, events: EventPublisher) -> None:
        self.events = events
        self._queue: asyncio.Queue[EventRecord] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._loop(), name="scan events")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def announce(self, event: EventRecord) -> None:
        """Queue an event whose row is committed."""
        self._queue.put_nowait(event)

    async def _loop(self) -> None:
        while True:
            chunk = [await self._queue.get()]
            while len(chunk) < CHUNK and not self._queue.empty():
                chunk.append(self._queue.get_nowait())
            last = [e for e in chunk if e.routing_key.startswith("scan.finished.")]
            first = [e for e in chunk if not e.routing_key.startswith("scan.finished.")]
            # One write per chunk, in order (events.announce_many): a publish per device
            # event cost more CPU than anything else a scan does per device.
            if first:
                await self.events.announce_many(first)
            if last:
                await self.events.announce_many(last)
