"""The poller worker: claims due pollers under a lease, polls, stores data, raises alerts.

Each replica runs one. It wakes at the earliest next run (or every ``tick`` at most, to
see pollers other replicas or the API added), claims as many due rows as it has free
BMC slots, and polls them concurrently. A failure records the scrubbed error, counts
it, and pushes the next try out by ``interval * 2^failures`` (capped at 1 h); the worker
itself never stops on a BMC's behalf.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from hwfleet.oob.alerts import evaluate
from hwfleet.oob.driver import BmcError
from hwfleet.oob.service import NoBmcError, OobService
from hwfleet.store.pollers import PollerRecord, PollerRepository

log = logging.getLogger(__name__)

#: ``alert(poller, alert)``: publish one alert (the controller sends it to the bus and events).
AlertSink = Callable[[PollerRecord, dict[str, Any]], Awaitable[None]]


def utcnow() -> datetime:
    return datetime.now(UTC)


class PollerWorker:
    def __init__(
        self,
        oob: OobService,
        *,
        worker: str,
        lease: float,
        tick: float,
        slots: int,
        alert: AlertSink | None = None,
    ) -> None:
        self.oob = oob
        self.worker = worker
        self.lease = lease
        self.tick = tick
        self.slots = slots
        self.alert = alert
        self._running: set[asyncio.Task[None]] = set()
        self._wake = asyncio.Event()
        self._loop_task: asyncio.Task[None] | None = None
        #: (lateness s, CPU s spent in this process on the poll) of recent polls (bench).
        self.stats: list[tuple[float, float]] = []
        self.keep_stats = False

    def start(self) -> None:
        self._loop_task = asyncio.create_task(self._loop(), name=f"pollers {self.worker}")

    def wake(self) -> None:
        """Look for due pollers now (a poller was added or changed)."""
        self._wake.set()

    async def close(self) -> None:
        if self._loop_task is not None:
            self._loop_task.cancel()
            await asyncio.gather(self._loop_task, return_exceptions=True)
        for task in list(self._running):
            task.cancel()
        await asyncio.gather(*self._running, return_exceptions=True)

    async def _loop(self) -> None:
        while True:
            try:
                wait = await self.run_once()
            except Exception:  # a store outage: try again next tick, never die
                log.exception("poller worker %s: claiming failed", self.worker)
                wait = self.tick
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), max(0.0, wait))

    async def run_once(self) -> float:
        """Claim and start due polls; return seconds until the next is due (at most ``tick``)."""
        free = self.slots - len(self._running)
        now = utcnow()
        store = self.oob.store
        if free > 0:
            async with store.tx() as tx:
                claimed = await PollerRepository(tx.conn).claim(
                    worker=self.worker, limit=free, lease=self.lease, now=now
                )
            for record in claimed:
                task = asyncio.create_task(self._poll(record))
                self._running.add(task)
                task.add_done_callback(self._done)
            if len(claimed) == free:
                return 0.0  # more may be due
        async with store.tx(readonly=True) as tx:
            due = await PollerRepository(tx.conn).next_due()
        if due is None:
            return self.tick
        return min(self.tick, (due - utcnow()).total_seconds())

    def _done(self, task: asyncio.Task[None]) -> None:
        self._running.discard(task)
        self._wake.set()  # a slot is free

    async def _poll(self, record: PollerRecord) -> None:
        started = utcnow()
        lateness = (started - record.next_run_at).total_seconds()
        cpu = time.thread_time()
        error: str | None = None
        data: Any = None
        try:
            data = await self.oob.run(record.node, lambda d: d.poll(record.type))
        except (BmcError, NoBmcError) as exc:
            error = str(exc)
        except Exception as exc:  # never lose the lease over a bug: record and back off
            log.exception("poller %s (%s of %s) failed", record.id, record.type, record.node)
            error = f"internal: {type(exc).__name__}"
        at = utcnow()
        async with self.oob.store.tx() as tx:
            repo = PollerRepository(tx.conn)
            if error is None:
                following = record.next_run_at + timedelta(seconds=record.interval)
                if following <= at:  # we fell behind: do not fire a burst to catch up
                    following = at + timedelta(seconds=record.interval)
                await repo.succeeded(
                    record.id, worker=self.worker, data=data, next_run_at=following, at=at
                )
            else:
                await repo.failed(record.id, worker=self.worker, error=error, at=at)
        if self.keep_stats:
            self.stats.append((lateness, time.thread_time() - cpu))
        if error is None and self.alert is not None:
            for alert in evaluate(record.type, record.last_data, data, record.rules):
                try:
                    await self.alert(record, alert)
                except Exception:
                    log.exception("poller %s: publishing an alert failed", record.id)
