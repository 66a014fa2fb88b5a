"""Commands sent to devices: short ones answered at once, long ones tracked as task rows."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from hwfleet.bus.topology import EventKey, word
from hwfleet.controller.active_tasks import ActiveTasks
from hwfleet.controller.events import EventPublisher, utcnow
from hwfleet.protocol import envelope, methods
from hwfleet.protocol.errors import ErrorCode, MethodError, RemoteError
from hwfleet.protocol.status import describe

if TYPE_CHECKING:
    from hwfleet.controller.devices import DeviceRegistry
    from hwfleet.store import Store
    from hwfleet.store.records import TaskRecord

log = logging.getLogger(__name__)

TERMINAL = frozenset({"complete", "error", "lost"})


class TaskService:
    """Creates task rows, sends the command, and follows ``task_status`` to the end."""

    def __init__(self, store: Store, devices: DeviceRegistry, events: EventPublisher) -> None:
        self._store = store
        self._devices = devices
        self._events = events
        self._finished: dict[str, asyncio.Event] = {}
        #: Arriving devices' active tasks, looked up together (a reconnect storm).
        self._active = ActiveTasks(store)

    async def close(self) -> None:
        """End the arriving devices' task lookups (their worker task is ours)."""
        await self._active.close()

    async def start(self, uuid: str, method: str, params: dict[str, Any]) -> TaskRecord:
        """Send a long command; the row exists before the command leaves."""
        method = methods.canonical(method)
        task_id = str(params.get("task_id") or envelope.new_id())
        EventKey.task_finished(task_id)  # refuse an id that would not route: '.', '*' or '#'
        params = {**params, "task_id": task_id}
        async with self._store.tx() as tx:
            record = await tx.tasks.create(task_id, uuid, method, params, utcnow())
        try:
            await self._devices.call(uuid, method, params)
        except Exception as exc:
            await self.update(
                uuid, methods.TaskStatus(task_id=task_id, state="error", msg=str(exc))
            )
            raise
        async with self._store.tx() as tx:
            updated = await tx.tasks.update(task_id, state="running", percent=0.0, at=utcnow())
        await self._progress(updated or record)
        return updated or record

    async def _progress(self, record: TaskRecord, st_id: int | None = None) -> None:
        """Tell dashboards where the task is (its bar moves in place; nothing recorded), and
        the device's status words when they changed with it."""
        body: dict[str, Any] = {
            "task_id": record.id,
            "uuid": record.device_uuid,
            "method": record.method,
            "state": record.state,
            "percent": record.percent,
            "msg": record.msg,
        }
        if st_id is not None:
            body["st_id"], body["st_words"] = st_id, describe(st_id)
        await self._events.progress(f"task.{word(record.id)}", body)

    async def update(self, uuid: str, status: methods.TaskStatus) -> TaskRecord:
        """Apply a ``task_status`` from ``uuid``; refuse reports about other devices' tasks."""
        async with self._store.tx() as tx:
            current = await tx.tasks.get(status.task_id)
            if current is None:
                raise MethodError(f"unknown task {status.task_id}", ErrorCode.NOT_FOUND)
            if current.device_uuid != uuid:
                raise MethodError(f"task {status.task_id} is not yours", ErrorCode.REFUSED)
            record = await tx.tasks.update(
                status.task_id,
                state=status.state,
                percent=100.0 if status.state == "complete" else status.percent,
                eta=status.eta,
                msg=status.msg,
                result=status.result,
                at=utcnow(),
            )
            changed = status.st_id is not None and await tx.devices.set_status(uuid, status.st_id)
        if record is None:
            raise MethodError(f"unknown task {status.task_id}", ErrorCode.NOT_FOUND)
        await self._progress(record, status.st_id if changed else None)
        if record.state in TERMINAL and current.state not in TERMINAL:
            await self._events.emit(
                EventKey.task_finished(record.id),
                {
                    "task_id": record.id,
                    "uuid": uuid,
                    "method": record.method,
                    "state": record.state,
                    "msg": record.msg,
                    "result": record.result,
                },
                device_uuid=uuid,
            )
            self._finished.pop(record.id, asyncio.Event()).set()
        return record

    async def cancel(self, record: TaskRecord) -> TaskRecord:
        """Ask the device to stop the task at its next safe point; it then reports ``error``
        "cancelled". A task the device is not running (any more) ends here as cancelled.

        Raises what a call raises (the device is offline, or does not answer in time).
        """
        try:
            await self._devices.call(
                record.device_uuid, methods.TASK_CANCEL, {"task_id": record.id}
            )
        except RemoteError as exc:
            if exc.code != ErrorCode.NOT_FOUND:
                raise
            return await self.update(
                record.device_uuid,
                methods.TaskStatus(
                    task_id=record.id,
                    state="error",
                    msg="cancelled (the device was not running it)",
                ),
            )
        return record

    async def reconcile(self, uuid: str, running: list[str]) -> None:
        """After a handshake: tasks we think run on ``uuid`` but it no longer knows are lost."""
        active = await self._active.of(uuid)
        for task in active:
            if task.params.get("via") == "bmc":  # --- oob3 --- run by the controller, not the agent
                continue
            if task.id not in running and task.state == "running":
                await self.update(
                    uuid,
                    methods.TaskStatus(
                        task_id=task.id, state="error", msg="the agent restarted and lost this task"
                    ),
                )

    async def wait(self, task_id: str, timeout: float) -> TaskRecord | None:
        """Wait until a task ends (or ``timeout``); returns the latest row."""
        event = self._finished.setdefault(task_id, asyncio.Event())
        async with self._store.tx() as tx:
            record = await tx.tasks.get(task_id)
        if record is None or record.state in TERMINAL:
            self._finished.pop(task_id, None)
            return record
        try:
            async with asyncio.timeout(timeout):
                await event.wait()
        except TimeoutError:
            pass
        async with self._store.tx() as tx:
            return await tx.tasks.get(task_id)
