"""Removing a device from the fleet: its record, inventory and discovery row go; its tasks
and events stay as history (they have no foreign key to the device on purpose)."""

from __future__ import annotations

import sqlalchemy as sa

from hwfleet.store.base import Repository
from hwfleet.store.models import devices, discovered


class RemovalRepository(Repository):
    """``RemovalRepository(tx.conn)``."""

    __slots__ = ()

    async def delete_device(self, uuid: str) -> bool:
        """Delete the device (its inventory goes with it); whether it existed."""
        await self._conn.execute(sa.delete(discovered).where(discovered.c.uuid == uuid))
        rows = await self._rows(
            sa.delete(devices).where(devices.c.uuid == uuid).returning(devices.c.uuid)
        )
        return bool(rows)
