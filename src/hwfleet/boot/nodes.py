"""Which node a MAC address belongs to: an enrolled device, or one DHCP discovered.

An enrolled device's node id is its uuid (it reports its MACs in the handshake). A MAC
no device reports becomes a node in state ``discovered``: a stable id derived from
the MAC (uuid5), recorded in ``tx.discovered`` so ``GET /api/v1/devices`` lists it.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

import sqlalchemy as sa

from hwfleet.store import Store
from hwfleet.store.models import discovered

#: The uuid5 namespace of node ids made from MACs (fixed: ids must survive restarts).
MAC_NAMESPACE = uuid.UUID("6f1c3b0e-3c6a-5a7e-9d39-7b0f5d1c2a41")


@dataclass(frozen=True, slots=True)
class Node:
    id: str
    mac: str
    enrolled: bool


def node_id_for_mac(mac: str) -> str:
    return str(uuid.uuid5(MAC_NAMESPACE, mac))


class NodeResolver:
    """MAC → :class:`Node`, reading the device store."""

    def __init__(self, store: Store) -> None:
        self._store = store

    async def find(self, mac: str) -> Node:
        """The enrolled device holding ``mac``, else the MAC's discovered-node id."""
        async with self._store.tx(readonly=True) as tx:
            # Devices are few enough per controller that a scan of their MAC lists is cheap
            # next to a DHCP exchange; an index would need a MAC table (not worth it yet).
            for device in await tx.devices.list():
                if mac in (m.lower() for m in device.macs):
                    return Node(device.uuid, mac, True)
        return Node(node_id_for_mac(mac), mac, False)

    async def record_discovered(self, node: Node, ip: str) -> bool:
        """Keep an unknown MAC as a discovered node; True the first time it is seen."""
        async with self._store.tx() as tx:
            seen = await tx.conn.execute(
                sa.select(discovered.c.uuid).where(discovered.c.uuid == node.id)
            )
            new = seen.first() is None
            await tx.discovered.upsert(
                node.id,
                {"uuid": node.id, "macs": [node.mac], "source": "dhcp", "name": node.mac},
                ipaddr=ip,
                spoofed=False,
                at=datetime.now(UTC),
            )
        return new
