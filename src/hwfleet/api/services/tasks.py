"""Tasks as the API sees them: the stored rows, and waiting for one to end."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import HTTPException, status

from hwfleet.api.convert import to_json
from hwfleet.api.ports import TaskControl
from hwfleet.protocol.errors import CallTimeoutError, RemoteError, SessionClosedError
from hwfleet.store import Store, TaskRecord
from hwfleet.store.records import TASK_TERMINAL


class TasksService:
    """The store's task rows, and the task service's ``wait``."""

    def __init__(self, store: Store, tasks: TaskControl) -> None:
        self.store = store
        self.tasks = tasks

    async def list_tasks(
        self,
        *,
        device: str | None,
        active: bool,
        limit: int,
        devices: list[str] | None = None,
        states: list[str] | None = None,
        since: datetime | None = None,
    ) -> list[dict[str, Any]]:
        """Newest first; ``devices`` (uuids a target selected), ``states`` and ``since``
        narrow the list (a bad state is a ValueError naming the states)."""
        async with self.store.tx() as tx:
            rows = await tx.tasks.list(
                device_uuid=device,
                active_only=active,
                limit=limit,
                device_uuids=devices,
                states=states,
                since=since,
            )
        return [to_json(r) for r in rows]

    async def get(self, task_id: str, wait: float) -> TaskRecord | None:
        """The task row; with ``wait``, once the task ends or ``wait`` seconds pass."""
        if wait:
            return await self.tasks.wait(task_id, wait)
        async with self.store.tx() as tx:
            return await tx.tasks.get(task_id)

    async def find(self, task_id: str) -> TaskRecord:
        """A task by id, or by a unique prefix of an active task's id (the tables show 8)."""
        async with self.store.tx(readonly=True) as tx:
            record = await tx.tasks.get(task_id)
            if record is not None:
                return record
            active = await tx.tasks.list(active_only=True, limit=5000)
        found = [t for t in active if t.id.startswith(task_id)] if len(task_id) >= 4 else []
        if len(found) == 1:
            return found[0]
        if found:
            ids = ", ".join(t.id for t in found[:10])
            raise HTTPException(
                status.HTTP_409_CONFLICT, f"{task_id!r} is the start of several tasks: {ids}"
            )
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no task {task_id}")

    async def cancel(self, task_id: str) -> dict[str, Any]:
        """Ask the task's device to stop it; 409 if it already ended or the device is away."""
        record = await self.find(task_id)
        if record.state in TASK_TERMINAL:
            raise HTTPException(
                status.HTTP_409_CONFLICT, f"task {record.id} already ended: {record.state}"
            )
        try:
            record = await self.tasks.cancel(record)
        except (CallTimeoutError, SessionClosedError, ConnectionError, LookupError) as exc:
            raise HTTPException(
                status.HTTP_409_CONFLICT,
                f"task {record.id}: device {record.device_uuid} cannot be reached to cancel "
                f"it ({exc})",
            ) from None
        except RemoteError as exc:
            raise HTTPException(
                status.HTTP_409_CONFLICT, f"task {record.id}: the device refused: {exc.msg}"
            ) from None
        return to_json(record)
