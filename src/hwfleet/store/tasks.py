"""Tasks: long commands sent to devices and the progress they report (seed 001 task_status).

Nothing follows ``error`` or ``complete`` on the wire, and nothing changes a task
in the store after a terminal state either: late or duplicated reports (a
redelivered AMQP message, a second replica) are ignored by the UPDATE's WHERE.
"""

from __future__ import annotations

import builtins
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from hwfleet.store.base import AnyRow, Repository, check_limit, check_state
from hwfleet.store.models import tasks
from hwfleet.store.records import TASK_ACTIVE, TASK_STATES, TASK_TERMINAL, TaskRecord


def _float(value: Any) -> float | None:
    # SQLite hands back a REAL with no fraction as an int.
    return None if value is None else float(value)


def to_task(row: AnyRow) -> TaskRecord:
    m = row._mapping
    return TaskRecord(
        id=m["id"],
        device_uuid=m["device_uuid"],
        method=m["method"],
        params=m["params"],
        state=m["state"],
        percent=_float(m["percent"]),
        eta=_float(m["eta"]),
        msg=m["msg"],
        result=m["result"],
        created_at=m["created_at"],
        updated_at=m["updated_at"],
        finished_at=m["finished_at"],
    )


class TaskRepository(Repository):
    """``tx.tasks``."""

    __slots__ = ()

    async def create(
        self, task_id: str, device_uuid: str, method: str, params: dict[str, Any], at: datetime
    ) -> TaskRecord:
        """A new task in state ``pending``; a duplicate ``task_id`` raises IntegrityError."""
        stmt = (
            sa.insert(tasks)
            .values(
                id=task_id,
                device_uuid=device_uuid,
                method=method,
                params=params,
                state="pending",
                created_at=at,
                updated_at=at,
            )
            .returning(*tasks.c)
        )
        row = await self._row(stmt)
        assert row is not None
        return to_task(row)

    async def update(
        self,
        task_id: str,
        *,
        state: str,
        percent: float | None = None,
        eta: float | None = None,
        msg: str | None = None,
        result: dict[str, Any] | None = None,
        at: datetime,
    ) -> TaskRecord | None:
        """Apply a progress report; returns the task as it now stands, or None if unknown.

        Fields left as None keep their previous value. After a terminal state the
        report is ignored and the unchanged task is returned.
        """
        check_state(state, TASK_STATES, "task")
        if percent is not None and not 0 <= percent <= 100:
            raise ValueError(f"percent must be between 0 and 100, not {percent}")
        values: dict[str, Any] = {"state": state, "updated_at": at}
        for column, value in (("percent", percent), ("eta", eta), ("msg", msg), ("result", result)):
            if value is not None:
                values[column] = value
        if state in TASK_TERMINAL:
            values["finished_at"] = at
        stmt = (
            sa.update(tasks)
            .where(tasks.c.id == task_id, tasks.c.state.not_in(TASK_TERMINAL))
            .values(values)
            .returning(*tasks.c)
        )
        row = await self._row(stmt)
        if row is None:
            return await self.get(task_id)
        return to_task(row)

    async def get(self, task_id: str) -> TaskRecord | None:
        row = await self._row(sa.select(tasks).where(tasks.c.id == task_id))
        return None if row is None else to_task(row)

    async def list(
        self,
        *,
        device_uuid: str | None = None,
        active_only: bool = False,
        limit: int = 200,
        device_uuids: Sequence[str] | None = None,
        states: Sequence[str] | None = None,
        since: datetime | None = None,
    ) -> builtins.list[TaskRecord]:
        """Newest first (by creation time); ``device_uuids``, ``states`` and ``since``
        (created or updated at or after it) narrow the list further."""
        stmt = sa.select(tasks).order_by(tasks.c.created_at.desc(), tasks.c.id.desc())
        if device_uuid is not None:
            stmt = stmt.where(tasks.c.device_uuid == device_uuid)
        if active_only:
            stmt = stmt.where(tasks.c.state.in_(TASK_ACTIVE))
        if device_uuids is not None:
            stmt = stmt.where(tasks.c.device_uuid.in_(list(device_uuids)))
        if states is not None:
            for state in states:
                check_state(state, TASK_STATES, "task")
            stmt = stmt.where(tasks.c.state.in_(list(states)))
        if since is not None:
            stmt = stmt.where(tasks.c.updated_at >= since)
        rows = await self._rows(stmt.limit(check_limit(limit)))
        return [to_task(row) for row in rows]

    async def fail_active_for_device(
        self, device_uuid: str, msg: str, at: datetime, *, state: str = "error"
    ) -> builtins.list[TaskRecord]:
        """End every pending/running task of a device (it went away); returns those tasks.

        ``state`` may be ``"lost"`` instead of ``"error"`` where the caller can tell
        the task's fate is unknown rather than failed.
        """
        check_state(state, TASK_TERMINAL, "terminal task")
        stmt = (
            sa.update(tasks)
            .where(tasks.c.device_uuid == device_uuid, tasks.c.state.in_(TASK_ACTIVE))
            .values(state=state, msg=msg, updated_at=at, finished_at=at)
            .returning(*tasks.c)
        )
        rows = await self._rows(stmt)
        return sorted((to_task(row) for row in rows), key=lambda t: (t.created_at, t.id))
