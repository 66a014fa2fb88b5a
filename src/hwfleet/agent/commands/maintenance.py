"""``device.maintenance {on}``: an operator takes the device out of service, or back (st_id -1).

In maintenance the device answers every short command (ping, status,
inventory, device settings) but refuses new long tasks and scans with a
``refused`` error naming the way out; a task already running goes on to its
end (stopping an erase half-way helps nobody). The state is saved in the data
dir, so it survives an agent restart until the operator turns it off.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import msgspec

from hwfleet.agent.localstate import LocalStateError
from hwfleet.protocol.errors import MethodError

if TYPE_CHECKING:
    from hwfleet.agent.runtime import AgentRuntime


class MaintenanceParams(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    on: bool


async def maintenance(rt: AgentRuntime, params: MaintenanceParams) -> dict[str, Any]:
    async with rt.local.lock:
        try:
            rt.local.save_maintenance(params.on)
        except (OSError, LocalStateError) as exc:
            raise MethodError(f"cannot record maintenance: {exc}") from None
        rt.status.set_maintenance(params.on)
    await rt.log("notice", "maintenance on" if params.on else "maintenance off")
    return {"maintenance": params.on, "st_id": rt.st_id()}
