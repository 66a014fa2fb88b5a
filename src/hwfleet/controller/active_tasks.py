"""Which tasks are active on a device, asked by many arriving devices at once (issue 18).

Every ``handshake`` reconciles the device's active tasks with the ones it says
it runs (:meth:`hwfleet.controller.tasks.TaskService.reconcile`). That was one
read transaction per arriving device: 7 % of the controller's samples while a
restarted fleet came back. Questions asked while one lookup runs are answered
together by the next, with one ``IN`` query, as the key checks are
(:mod:`hwfleet.trust.session_checks`). Nothing is remembered between lookups:
tasks change all the time.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from hwfleet.store import Store
    from hwfleet.store.records import TaskRecord

log = logging.getLogger(__name__)

#: At most this many devices in one query.
BATCH = 500
#: Active tasks read per device at most (what one device's own lookup read before).
PER_DEVICE = 200


class ActiveTasks:
    """``await of(uuid)``: the device's active tasks, newest first, looked up in batches."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._waiting: dict[str, asyncio.Future[list[TaskRecord]]] = {}
        self._worker: asyncio.Task[None] | None = None
        #: Queries run, for tests: fewer than the questions when they came together.
        self.queries = 0

    async def of(self, uuid: str) -> list[TaskRecord]:
        future = self._waiting.get(uuid)
        if future is None:
            future = asyncio.get_running_loop().create_future()
            self._waiting[uuid] = future
            if self._worker is None or self._worker.done():
                self._worker = asyncio.create_task(self._drain(), name="active-tasks")
        # shield: one caller's cancellation must not cancel the others' shared answer.
        return await asyncio.shield(future)

    async def close(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
            await asyncio.gather(self._worker, return_exceptions=True)
        for future in self._waiting.values():
            future.cancel()
        self._waiting.clear()

    async def _drain(self) -> None:
        # Bounded: each round answers at least one waiting question; new questions come
        # only from new handshakes.
        while self._waiting:
            batch = dict(list(self._waiting.items())[:BATCH])
            for uuid in batch:
                del self._waiting[uuid]
            self.queries += 1
            try:
                async with self._store.tx(readonly=True) as tx:
                    rows = await tx.tasks.list(
                        device_uuids=list(batch),
                        active_only=True,
                        limit=PER_DEVICE * len(batch),
                    )
            except Exception as exc:
                log.exception("looking up the active tasks of %d devices failed", len(batch))
                for future in batch.values():
                    if not future.done():
                        future.set_exception(exc)
                continue
            found: defaultdict[str, list[TaskRecord]] = defaultdict(list)
            for row in rows:
                found[row.device_uuid].append(row)
            for uuid, future in batch.items():
                if not future.done():
                    future.set_result(found.get(uuid, []))
