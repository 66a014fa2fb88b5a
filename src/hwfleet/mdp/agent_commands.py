"""``mdp.key``: the controller fetches a machine's diagnostics key over its authenticated link.

Registered in the ``hwfleet.agent_commands`` entry-point group, so it is answered only
on the controller session (mTLS after enrollment) — never on the UDP endpoint.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from hwfleet.protocol.errors import ErrorCode, MethodError

if TYPE_CHECKING:
    from hwfleet.mdp.runtime import MachineRuntime
    from hwfleet.protocol.methods import MethodRegistry

KEY_METHOD = "mdp.key"


async def mdp_key(rt: MachineRuntime, params: dict[str, Any]) -> dict[str, Any]:
    key = rt.mdp_key
    if key is None:
        raise MethodError("the diagnostics endpoint is off on this device", ErrorCode.FAILED)
    return {"key": key.hex(), "port": rt.mdp_port}


def register(registry: MethodRegistry[Any]) -> None:
    registry.add(KEY_METHOD, mdp_key)
