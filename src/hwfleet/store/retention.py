"""Retention: delete events and finished tasks older than a cut-off, and count them.

Running tasks are never pruned, whatever their age. The indexes are declared here,
beside the queries they serve (migration 0010 builds them).
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa

from hwfleet.store.base import Repository
from hwfleet.store.models import events, tasks
from hwfleet.store.records import TASK_TERMINAL

sa.Index("ix_events_at", events.c.at)
sa.Index("ix_tasks_finished_at", tasks.c.finished_at)


class RetentionRepository(Repository):
    """``RetentionRepository(tx.conn)``: the pruning statements."""

    __slots__ = ()

    async def prune_events(self, before: datetime) -> int:
        result = await self._conn.execute(sa.delete(events).where(events.c.at < before))
        return int(result.rowcount)

    async def prune_tasks(self, before: datetime) -> int:
        result = await self._conn.execute(
            sa.delete(tasks).where(
                tasks.c.state.in_(TASK_TERMINAL),
                tasks.c.finished_at.is_not(None),
                tasks.c.finished_at < before,
            )
        )
        return int(result.rowcount)
