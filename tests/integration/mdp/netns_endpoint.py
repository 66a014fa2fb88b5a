"""Runs one agent's diagnostics endpoint (``ip netns exec NS python THIS DATA_DIR PORT``).

Prints ``ready`` once listening, serves until its stdin closes, then prints its counters as
one JSON line.
"""

from __future__ import annotations

import asyncio
import json
import sys

from hwfleet.mdp.endpoint import MdpEndpoint
from hwfleet.mdp.keys import load_or_create_key
from hwfleet.mdp.operations import load_operations


async def main(data_dir: str, port: int) -> None:
    endpoint = MdpEndpoint(load_or_create_key(data_dir), load_operations(), port=port)
    await endpoint.start()
    print("ready", flush=True)
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, sys.stdin.read)
    await endpoint.close()
    print(json.dumps(dict(endpoint.counters)), flush=True)


asyncio.run(main(sys.argv[1], int(sys.argv[2])))
