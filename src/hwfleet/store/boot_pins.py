"""DHCP pins (``boot_pins``): MAC → address reservations that Kea's configuration carries."""

from __future__ import annotations

import builtins
from datetime import datetime

import sqlalchemy as sa

from hwfleet.store.base import Repository
from hwfleet.store.models import boot_pins


class BootPinRepository(Repository):
    """Bind to a transaction's connection: ``BootPinRepository(tx.conn)``."""

    __slots__ = ()

    async def list(self) -> builtins.list[tuple[str, str]]:
        """``(mac, ip)`` pairs, ordered by MAC."""
        rows = await self._rows(
            sa.select(boot_pins.c.mac, boot_pins.c.ip).order_by(boot_pins.c.mac)
        )
        return [(row[0], row[1]) for row in rows]

    async def by_mac(self, mac: str) -> str | None:
        row = await self._row(sa.select(boot_pins.c.ip).where(boot_pins.c.mac == mac))
        return None if row is None else str(row[0])

    async def by_ip(self, ip: str) -> str | None:
        row = await self._row(sa.select(boot_pins.c.mac).where(boot_pins.c.ip == ip))
        return None if row is None else str(row[0])

    async def add(self, mac: str, ip: str, at: datetime) -> None:
        await self._conn.execute(sa.insert(boot_pins).values(mac=mac, ip=ip, created_at=at))

    async def remove_mac(self, mac: str) -> bool:
        result = await self._conn.execute(sa.delete(boot_pins).where(boot_pins.c.mac == mac))
        return bool(result.rowcount)
