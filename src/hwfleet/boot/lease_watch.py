"""Turns Kea's new and renewed leases into ``dhcp.bind.success.<nodeid>`` events.

Debian's Kea has no hook that calls out per lease, so the watcher reads the lease
table through ``lease_cmds`` every ``interval`` seconds and compares it with the
last copy: a lease whose (MAC, address, last transmission time) changed is a bind.
What Kea held when the watcher started is the baseline, not news.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from hwfleet.boot.kea_control import KeaError
from hwfleet.boot.leases import Lease, LeaseSource
from hwfleet.boot.nodes import NodeResolver
from hwfleet.bus.topology import word

log = logging.getLogger(__name__)

Emit = Callable[[str, dict[str, Any], str | None], Awaitable[None]]


def bind_key(node_id: str) -> str:
    return f"dhcp.bind.success.{word(node_id)}"


class LeaseWatcher:
    def __init__(
        self, leases: LeaseSource, nodes: NodeResolver, emit: Emit, interval: float = 1.0
    ) -> None:
        self._leases = leases
        self._nodes = nodes
        self._emit = emit
        self._interval = interval
        self._seen: dict[str, tuple[str, int]] | None = None  # mac → (ip, cltt)
        self._task: asyncio.Task[None] | None = None
        self.binds = 0

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="dhcp-lease-watch")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _run(self) -> None:
        while True:
            try:
                await self.poll()
            except KeaError as exc:  # Kea restarting: the supervisor reports it; try again
                log.debug("lease poll: %s", exc)
            except Exception:
                log.exception("lease poll failed")
            await asyncio.sleep(self._interval)  # the poll period (Kea cannot push)

    async def poll(self) -> list[Lease]:
        """Read the table once; publish and return the binds since the last read."""
        table = {x.mac: x for x in await self._leases.all() if x.state == "active"}
        current = {mac: (x.ip, x.cltt) for mac, x in table.items()}
        previous, self._seen = self._seen, current
        if previous is None:
            return []
        fresh = [table[mac] for mac, seen in current.items() if previous.get(mac) != seen]
        for lease in fresh:
            await self.announce(lease)
        return fresh

    async def announce(self, lease: Lease) -> None:
        node = await self._nodes.find(lease.mac)
        new = False
        if not node.enrolled:
            new = await self._nodes.record_discovered(node, lease.ip)
        payload = {
            "nodeId": node.id,
            "mac": lease.mac,
            "ip": lease.ip,
            "expires": lease.expires.isoformat(),
            "discovered": new,
            "enrolled": node.enrolled,
        }
        self.binds += 1
        await self._emit(bind_key(node.id), payload, node.id if node.enrolled else None)
