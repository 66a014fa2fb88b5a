"""The controller-side ports a running task uses: the agent, the HTTP client, SKUs.

``Task.Base.Agent.Run`` goes through the controller's existing task path: short methods
through :meth:`DeviceRegistry.call`, long ones through :class:`TaskService` (a ``tasks`` row,
the command, then the agent's ``task_status`` reports) — the same path ``hwfleet device``
uses, on either carrier.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING, Any

import httpx

from hwfleet.controller.events import utcnow
from hwfleet.errors import ProtocolError
from hwfleet.protocol import methods
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


async def http_request(method: str, url: str, body: Any) -> tuple[int, str]:
    try:
        async with httpx.AsyncClient(timeout=30.0, follow_redirects=False) as client:
            kwargs: dict[str, Any] = {} if body is None else {"json": body}
            response = await client.request(method, url, **kwargs)
    except httpx.HTTPError as exc:
        raise TaskFailedError(f"{method} {url}: {exc}") from None
    return response.status_code, response.text


async def poll_response(store: Store, task_id: str, every: float = 0.5) -> dict[str, Any]:
    """Wait for a node's respondCommands on this task (bounded by the task's timeout)."""
    from hwfleet.store.graphs import GraphRepository

    while True:
        async with store.tx(readonly=True) as tx:
            row = await GraphRepository(tx.conn).get_task(task_id)
        if row is None or row.state != "running":
            raise TaskFailedError("task ended while waiting for respondCommands")
        if row.response is not None:
            return dict(row.response)
        await asyncio.sleep(every)  # another replica may receive it: the row is the channel
