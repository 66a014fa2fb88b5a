"""The controller's own log records, published on the ``logging`` exchange by seed level.

Records are queued by the handler and published by one task, so logging never
blocks or re-enters the event loop; records from the bus itself are skipped to
avoid a loop when the broker is the thing failing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import TYPE_CHECKING, Any

from hwfleet.bus.topology import level_for

if TYPE_CHECKING:
    from hwfleet.bus.base import Bus

_SKIP = ("hwfleet.bus", "aio_pika", "aiormq")


class BusLogHandler(logging.Handler):
    def __init__(self, bus: Bus, replica: str, *, capacity: int = 10_000) -> None:
        super().__init__(level=logging.INFO)
        self._bus = bus
        self._replica = replica
        self._queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(maxsize=capacity)
        self._loop = asyncio.get_running_loop()
        self._task = self._loop.create_task(self._drain(), name="bus-log-publisher")
        self.dropped = 0

    def emit(self, record: logging.LogRecord) -> None:
        if record.name.startswith(_SKIP):
            return
        body = {
            "source": "controller",
            "replica": self._replica,
            "logger": record.name,
            "level": level_for(record.levelno),
            "msg": record.getMessage(),
            "at": time.time(),
        }
        with contextlib.suppress(RuntimeError):  # the loop is closing
            self._loop.call_soon_threadsafe(self._offer, body)

    def _offer(self, body: dict[str, Any]) -> None:
        if self._queue.full():
            self.dropped += 1
            return
        self._queue.put_nowait(body)

    async def _drain(self) -> None:
        while True:
            body = await self._queue.get()
            with contextlib.suppress(Exception):  # a log line is never worth a crash
                await self._bus.publish("logging", body["level"], body)

    async def aclose(self) -> None:
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)


async def attach(bus: Bus, replica: str) -> BusLogHandler:
    handler = BusLogHandler(bus, replica)
    logging.getLogger("hwfleet").addHandler(handler)
    return handler


async def detach(handler: BusLogHandler) -> None:
    logging.getLogger("hwfleet").removeHandler(handler)
    await handler.aclose()
