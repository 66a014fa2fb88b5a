"""The retention pruner: the store must not grow without bound (events, finished tasks).

Every ``retention_interval`` seconds (and once at start-up) it deletes events older
than ``retention_events_days`` and finished tasks older than ``retention_tasks_days``,
and logs how many went. Replicas may all run it: a DELETE of rows another replica
deleted first simply counts nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import UTC, datetime, timedelta

from hwfleet.api.retention import RetentionReport
from hwfleet.settings import ServerSettings
from hwfleet.store import Store
from hwfleet.store.retention import RetentionRepository

log = logging.getLogger(__name__)


class Pruner:
    def __init__(self, store: Store, settings: ServerSettings) -> None:
        self._store = store
        self._events_days = settings.retention_events_days
        self._tasks_days = settings.retention_tasks_days
        self._interval = settings.retention_interval
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        #: What the last run deleted: ``{"events": n, "tasks": n}``.
        self.last: dict[str, int] = {}
        #: Its settings, last run and totals, as ``GET /api/v1/retention`` shows them.
        self.report = RetentionReport(self._events_days, self._tasks_days, self._interval)

    async def prune_once(self, now: datetime | None = None) -> dict[str, int]:
        """Delete what is past its age now; returns the counts."""
        now = now or datetime.now(UTC)
        counts = {"events": 0, "tasks": 0}
        async with self._store.tx() as tx:
            repo = RetentionRepository(tx.conn)
            if self._events_days:
                counts["events"] = await repo.prune_events(now - timedelta(days=self._events_days))
            if self._tasks_days:
                counts["tasks"] = await repo.prune_tasks(now - timedelta(days=self._tasks_days))
        if any(counts.values()):
            log.info(
                "retention: pruned %d events (older than %g days) and %d finished tasks "
                "(older than %g days)",
                counts["events"],
                self._events_days,
                counts["tasks"],
                self._tasks_days,
            )
        self.last = counts
        self.report.record(counts, now)
        return counts

    async def start(self) -> None:
        if self._events_days or self._tasks_days:
            self._task = asyncio.create_task(self._run(), name="retention pruner")

    async def _run(self) -> None:
        while not self._stop.is_set():
            try:
                await self.prune_once()
            except Exception as exc:  # the store may be down for a while: try next time
                log.warning("retention: pruning failed, will retry: %s", exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), self._interval)

    async def close(self) -> None:
        self._stop.set()
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)
