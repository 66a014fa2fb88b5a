"""Task rows run by the controller itself against a BMC (not by an agent): find, claim, keep.

Such a task (``params.via == "bmc"``) is owned by whichever replica last touched its row:
the owner bumps ``updated_at`` while it works, and a row left untouched for ``stale``
seconds — its replica stopped or died — is claimed by another with one conditional
UPDATE, so two replicas never both take it over.
"""

from __future__ import annotations

import builtins
from datetime import datetime

import sqlalchemy as sa

from hwfleet.store.base import Repository
from hwfleet.store.models import tasks
from hwfleet.store.records import TaskRecord
from hwfleet.store.tasks import to_task

#: ``params["via"]`` of a task the controller runs through the node's BMC.
VIA_BMC = "bmc"


class BmcTaskRepository(Repository):
    """``BmcTaskRepository(tx.conn)``."""

    __slots__ = ()

    async def stale(self, method: str, before: datetime) -> builtins.list[TaskRecord]:
        """Running BMC tasks of ``method`` nobody touched since ``before``."""
        stmt = sa.select(tasks).where(
            tasks.c.method == method,
            tasks.c.state.in_(("pending", "running")),
            tasks.c.updated_at < before,
        )
        found = [to_task(r) for r in await self._rows(stmt)]
        # The JSON test stays in Python: both engines, and these rows are few.
        return [t for t in found if t.params.get("via") == VIA_BMC]

    async def claim(self, task_id: str, before: datetime, now: datetime) -> bool:
        """Take the task over if it is still untouched since ``before``; True if taken."""
        result = await self._conn.execute(
            sa.update(tasks)
            .where(
                tasks.c.id == task_id,
                tasks.c.state.in_(("pending", "running")),
                tasks.c.updated_at < before,
            )
            .values(updated_at=now)
        )
        return bool(result.rowcount == 1)

    async def touch(self, task_id: str, now: datetime) -> bool:
        """Say the owner is still at work; False once the task has ended."""
        result = await self._conn.execute(
            sa.update(tasks)
            .where(tasks.c.id == task_id, tasks.c.state.in_(("pending", "running")))
            .values(updated_at=now)
        )
        return bool(result.rowcount == 1)
