"""Long commands on the agent: accept at once, run in the background, report until the end.

Status reports survive a dropped link: the latest report of every task is
kept until the controller acknowledges it and is sent again after a
reconnect, so an ``error`` or ``complete`` is never lost.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from hwfleet.errors import DeviceError
from hwfleet.protocol import methods
from hwfleet.protocol.errors import ErrorCode, MethodError
from hwfleet.protocol.session import Session

if TYPE_CHECKING:
    from hwfleet.agent.status import StatusTracker

log = logging.getLogger(__name__)

Report = Callable[[float, float | None], Awaitable[None]]
Work = Callable[[Report], Awaitable[dict[str, Any]]]


class TaskFailedError(DeviceError):
    """Raised by task work to end in ``error`` with a result attached."""

    def __init__(self, msg: str, result: dict[str, Any] | None = None) -> None:
        super().__init__(msg)
        self.msg = msg
        self.result = result


class TaskCancelledError(DeviceError):
    """Raised at a task's safe point (its progress report) once the task was cancelled."""


CANCELLED = "cancelled"


class AgentTasks:
    """Runs at most one long task at a time (they touch disks and firmware)."""

    def __init__(self, status: StatusTracker) -> None:
        """``status``: told when a task starts, progresses and ends (st_id 16, 64, 128)."""
        self._running: dict[str, asyncio.Task[None]] = {}
        #: Tasks asked to stop: their next progress report (the safe point) raises.
        self._cancelling: set[str] = set()
        self._unacked: dict[str, methods.TaskStatus] = {}
        self._session: Session[Any] | None = None
        self._flushing = asyncio.Lock()
        self._status = status

    def running(self) -> list[str]:
        return list(self._running)

    def attach(self, session: Session[Any] | None) -> None:
        self._session = session
        if session is not None and self._unacked:
            asyncio.get_running_loop().create_task(self._flush())

    def start(self, task_id: str, method: str, work: Work) -> dict[str, Any]:
        self._status.refuse_in_maintenance(method)
        if task_id in self._running:
            raise MethodError(f"task {task_id} is already running", ErrorCode.BUSY)
        if self._running:
            busy = next(iter(self._running))
            raise MethodError(f"busy with task {busy}; try again when it ends", ErrorCode.BUSY)
        self._running[task_id] = asyncio.get_running_loop().create_task(
            self._run(task_id, method, work), name=f"task-{task_id}"
        )
        self._status.set_task_progress(0.0)
        return {"task_id": task_id, "accepted": True}

    def cancel(self, task_id: str) -> dict[str, Any]:
        """Stop ``task_id`` at its next safe point: the work's next call to ``report``.

        Work reports between steps that can be abandoned (an erase between chunks, its
        writer thread stopped before the device is closed), so a task is never cut off
        in the middle of one. The task then ends in ``error`` with msg "cancelled".
        """
        if task_id not in self._running:
            raise MethodError(f"no running task {task_id}", ErrorCode.NOT_FOUND)
        self._cancelling.add(task_id)
        return {"task_id": task_id, "cancelling": True}

    async def close(self) -> None:
        for task in self._running.values():
            task.cancel()
        await asyncio.gather(*self._running.values(), return_exceptions=True)

    async def _run(self, task_id: str, method: str, work: Work) -> None:
        last = 0.0

        async def report(percent: float, eta: float | None) -> None:
            nonlocal last
            if task_id in self._cancelling:
                raise TaskCancelledError(CANCELLED)
            percent = max(0.0, min(100.0, percent))
            now = time.monotonic()
            if now - last >= 0.25 or percent >= 100.0:
                last = now
                self._status.set_task_progress(percent)
                await self._send(
                    methods.TaskStatus(task_id=task_id, state="running", percent=percent, eta=eta)
                )

        final = methods.TaskStatus(task_id=task_id, state="error", msg=f"{method} was stopped")
        try:
            await self._send(methods.TaskStatus(task_id=task_id, state="running", percent=0.0))
            result = await work(report)
            final = methods.TaskStatus(task_id=task_id, state="complete", result=result)
        except TaskCancelledError:
            final = methods.TaskStatus(task_id=task_id, state="error", msg=CANCELLED)
        except TaskFailedError as exc:
            final = methods.TaskStatus(
                task_id=task_id, state="error", msg=exc.msg, result=exc.result
            )
        except asyncio.CancelledError:
            final = methods.TaskStatus(task_id=task_id, state="error", msg="cancelled")
            raise
        except Exception as exc:
            log.exception("task %s (%s) failed", task_id, method)
            final = methods.TaskStatus(
                task_id=task_id, state="error", msg=f"{method} failed: {exc}"
            )
        finally:
            self._running.pop(task_id, None)
            self._cancelling.discard(task_id)
            if final.state == "complete":
                self._status.task_completed()
            else:
                self._status.set_error(final.msg or f"{method} failed")
        await self._send(final)

    async def _send(self, status: methods.TaskStatus) -> None:
        self._unacked[status.task_id] = status
        await self._flush()

    async def _flush(self) -> None:
        async with self._flushing:
            for task_id, status in list(self._unacked.items()):
                session = self._session
                if session is None or session.closed:
                    return  # resent after the next handshake
                try:
                    # The device's status as it is now, not when the report was made: a
                    # report resent after a reconnect must not set an older one again.
                    params = _params(status, self._status.status.st_id)
                    await session.call(methods.TASK_STATUS, params, timeout=10.0)
                except Exception as exc:
                    log.info("task_status for %s not delivered yet: %s", task_id, exc)
                    return
                if self._unacked.get(task_id) is status:
                    del self._unacked[task_id]


def _params(status: methods.TaskStatus, st_id: int) -> dict[str, Any]:
    out: dict[str, Any] = {"task_id": status.task_id, "state": status.state, "st_id": st_id}
    for key in ("percent", "eta", "msg", "result"):
        value = getattr(status, key)
        if value is not None:
            out[key] = value
    return out
