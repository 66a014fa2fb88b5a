"""The agent as task graphs see it: ``Task.Base.Agent.Run`` through the controller's task path.

Short methods go through :meth:`DeviceRegistry.call`, long ones through :class:`TaskService`
(a ``tasks`` row, the command, then the agent's ``task_status`` reports) — the same path
``hwfleet device`` uses, on either carrier.
"""

from __future__ import annotations

import asyncio
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
#: How long a task waits for a node the store still says is online to (re)connect here:
#: after a controller restart its stream devices come back over a few seconds of backoff,
#: and failing their tasks meanwhile failed graphs a restart should only have delayed.
RECONNECT_GRACE = 30.0


class ControllerAgent:
    def __init__(
        self,
        store: Store,
        devices: DeviceRegistry,
        tasks: TaskService,
        grace: float = RECONNECT_GRACE,
    ) -> None:
        self._store = store
        self._devices = devices
        self._tasks = tasks
        self._grace = grace
        self._waiting: dict[str, list[asyncio.Future[None]]] = {}
        devices.on_attach(self._attached)

    def _attached(self, conn: Any) -> None:
        for future in self._waiting.pop(conn.uuid, []):
            if not future.done():
                future.set_result(None)

    async def _await_node(self, node: str) -> None:
        """Return once ``node`` is reachable here, waiting up to the grace for a node the
        store says is online (reconnecting); a node recorded offline fails at once."""
        if await self._devices.reachable(node):
            return
        async with self._store.tx(readonly=True) as tx:
            record = await tx.devices.get(node)
        if record is None or record.state != "online":
            return  # the call below says "not connected"
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(node, []).append(future)
        try:
            if await self._devices.reachable(node):  # attached while we read the store
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(future, self._grace)
        finally:
            waiters = self._waiting.get(node, [])
            if future in waiters:
                waiters.remove(future)
            if not waiters:
                self._waiting.pop(node, None)

    async def call(self, node: str, method: str, params: dict[str, Any]) -> dict[str, Any]:
        await self._await_node(node)
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
        await self._await_node(node)
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
