"""Runs one real network operation inside a namespace: ``ip netns exec NS python THIS OP JSON``.

``apply`` validates the JSON as ``device.network.set`` params and applies them
with the iproute2 backend; ``live`` reads an interface's state. One JSON line
on stdout: the outcome, or ``{"error": "..."}``.
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

import msgspec

from hwfleet.agent.netconfig import NetConfigError, NetworkParams, validate
from hwfleet.agent.netconfig.apply import ApplyError, apply, read_live


async def main(op: str, doc: dict[str, Any]) -> dict[str, Any]:
    try:
        if op == "apply":
            settings = validate(msgspec.convert(doc, NetworkParams))
            return await apply(settings, backend="iproute2")
        return await read_live(doc["interface"])
    except (NetConfigError, ApplyError) as exc:
        return {"error": str(exc)}


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main(sys.argv[1], json.loads(sys.argv[2])))))
