"""What a running task uses besides the agent: the HTTP client and the bootstrap pair.

The agent itself is :class:`~hwfleet.workflows.basetasks.AgentPort`; the controller provides
it (``hwfleet.controller.graph_agent``), so this package imports nothing of the controller.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import httpx

from hwfleet.workflows.basetasks import TaskFailedError

if TYPE_CHECKING:
    from hwfleet.store import Store


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
