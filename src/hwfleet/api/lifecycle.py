"""Device lifecycle: remove a device from the fleet (``DELETE /api/v1/devices/{uuid}``)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, status

from hwfleet.api.auth import require_token
from hwfleet.api.deps import DevicesDep, KeysDep
from hwfleet.store.lifecycle import RemovalRepository

router = APIRouter(prefix="/api/v1", tags=["devices"], dependencies=[Depends(require_token)])

#: Key states that still let a device in (or could): these are rejected on removal.
LIVE_KEYS = ("accepted", "pending")


@router.delete("/devices/{uuid}")
async def remove_device(uuid: str, devices: DevicesDep, keys: KeysDep) -> dict[str, Any]:
    """Retire a device: reject its keys (which drops its session: it cannot come back
    without enrolling again), end its running tasks, and delete its record and inventory.
    Its tasks and events are kept as history. 404 for an unknown uuid."""
    async with devices.store.tx(readonly=True) as tx:
        if await tx.devices.get(uuid) is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"no such device: {uuid}")
        owned = [k for k in await tx.keys.for_device(uuid) if k.state in LIVE_KEYS]
    revoked = [(await keys.reject(k.id))["id"] for k in owned]
    now = datetime.now(UTC)
    async with devices.store.tx() as tx:
        ended = await tx.tasks.fail_active_for_device(uuid, "the device was removed", now)
        deleted = await RemovalRepository(tx.conn).delete_device(uuid)
    return {
        "uuid": uuid,
        "removed": deleted,
        "keys_revoked": revoked,
        "tasks_ended": [t.id for t in ended],
    }
