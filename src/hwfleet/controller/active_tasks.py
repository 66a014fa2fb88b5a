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

from collections import defaultdict
from typing import TYPE_CHECKING

from hwfleet.store.coalesce import Coalescer

if TYPE_CHECKING:
    from hwfleet.store import Store
    from hwfleet.store.records import TaskRecord

#: At most this many devices in one query.
BATCH = 500
#: Active tasks read per device at most (what one device's own lookup read before).
PER_DEVICE = 200


class ActiveTasks:
    """``await of(uuid)``: the device's active tasks, newest first, looked up in batches."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._lookups = Coalescer(self._lookup, batch=BATCH, name="active-tasks")

    @property
    def queries(self) -> int:
        """Queries run, for tests: fewer than the questions when they came together."""
        return self._lookups.lookups

    async def of(self, uuid: str) -> list[TaskRecord]:
        return await self._lookups.ask(uuid) or []

    async def close(self) -> None:
        await self._lookups.close()

    async def _lookup(self, uuids: list[str]) -> dict[str, list[TaskRecord]]:
        async with self._store.tx(readonly=True) as tx:
            rows = await tx.tasks.list(
                device_uuids=uuids, active_only=True, limit=PER_DEVICE * len(uuids)
            )
        found: defaultdict[str, list[TaskRecord]] = defaultdict(list)
        for row in rows:
            found[row.device_uuid].append(row)
        return found
