"""Tasks as the API sees them: the stored rows, and waiting for one to end."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from hwfleet.api.convert import to_json
from hwfleet.api.ports import TaskControl
from hwfleet.store import Store, TaskRecord


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
