"""Runs the agent's NIC collection in the namespace it starts in: ``ip netns exec NS python THIS``.

Prints one JSON line: the inventory's ``interfaces`` and ``excluded_interfaces``
and the ``scan`` command's reply, all through the real sysfs manager and the
agent's own ``scan`` handler.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import msgspec

from hwfleet.agent.commands.core import ScanParams, scan
from hwfleet.agent.hardware import default_dispatcher
from hwfleet.agent.identity import DeviceInfo
from hwfleet.agent.runtime import AgentRuntime


async def main() -> dict[str, Any]:
    hardware = default_dispatcher()
    info = DeviceInfo(
        uuid="00000000-0000-4000-8000-000000000001", serial="SN1", name="n", model_id="m"
    )
    runtime = AgentRuntime(info, hardware)
    inventory: dict[str, Any] = msgspec.to_builtins(await runtime.inventory())
    return {
        "interfaces": inventory.get("interfaces", []),
        "excluded_interfaces": inventory.get("excluded_interfaces", []),
        "scan": await scan(runtime, ScanParams(operationid=7)),
        "handshake_macs": runtime.handshake()["macs"],
    }


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main())))
