"""The agent as task graphs see it: ``Task.Base.Agent.Run`` through the controller's task path.

Short methods go through :meth:`DeviceRegistry.call`, long ones through :class:`TaskService`
(a ``tasks`` row, the command, then the agent's ``task_status`` reports) — the same path
``hwfleet device`` uses, on either carrier.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any

from hwfleet.errors import ProtocolError
from hwfleet.protocol import methods
from hwfleet.types import utcnow
from hwfleet.workflows.basetasks import TaskFailedError

if TYPE_CHECKING:
    from hwfleet.controller.devices import DeviceRegistry
    from hwfleet.controller.tasks import TaskService
    from hwfleet.store import Store

#: How often a long agent task's row is re-read when no local report woke us.
_RECHECK = 1.0


class ControllerAgent:
    def __init__(self, store: Store, devices: DeviceRegistry, tasks: TaskService) -> None:
        self._store = store
        self._devices = devices
        self._tasks = tasks

    async def call(self, node: str, method: str, params: dict[str, Any]) -> dict[str, Any]:
        try:
            result = await self._devices.call(node, method, params)
        except (ProtocolError, ConnectionError, TimeoutError) as exc:
            raise TaskFailedError(f"{method} on {node}: {exc}") from None
        if method == methods.INVENTORY and isinstance(result, dict):
            # The catalog SKU rules read: keep the newest one.
            with contextlib.suppress(LookupError):
                await self._store.write(lambda tx: tx.devices.set_inventory(node, result, utcnow()))
        return result

    async def run_long(self, node: str, method: str, params: dict[str, Any]) -> dict[str, Any]:
        try:
            record = await self._tasks.start(node, method, params)
        except (ProtocolError, ConnectionError, TimeoutError) as exc:
            raise TaskFailedError(f"{method} on {node}: {exc}") from None
        while record.state not in ("complete", "error", "lost"):
            latest = await self._tasks.wait(record.id, _RECHECK)
            if latest is None:
                raise TaskFailedError(f"agent task {record.id} vanished from the store")
            record = latest
            if record.state in ("complete", "error", "lost"):
                break
            if not await self._devices.reachable(node):
                raise TaskFailedError(f"node {node} disappeared while running {method}")
        if record.state != "complete":
            raise TaskFailedError(f"{method} on {node} ended {record.state}: {record.msg or ''}")
        return dict(record.result or {})
