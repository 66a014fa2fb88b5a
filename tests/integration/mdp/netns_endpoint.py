"""Runs one agent's diagnostics endpoint (``ip netns exec NS python THIS DATA_DIR PORT
[AUTHORIZED_KEYS HOST_KEY_PUB]``); with those, its cluster mode syncs folders every second
(the sync key made in DATA_DIR at first use, the peers' keys trusted by ``hwfleet mdp
cluster``).

Prints ``ready`` once listening, serves until its stdin closes, then prints its counters as
one JSON line.
"""

from __future__ import annotations

import asyncio
import json
import sys

from hwfleet.mdp.cluster import ClusterMember
from hwfleet.mdp.endpoint import MdpEndpoint
from hwfleet.mdp.keys import load_or_create_key
from hwfleet.mdp.operations import OperationContext, load_operations
from hwfleet.mdp.sync import FolderSync, SyncConfig


async def main(data_dir: str, port: int, ssh: list[str]) -> None:
    ops = load_operations()
    context = OperationContext(ops)
    config = (
        SyncConfig(
            f"{data_dir}/cluster_ssh_key",
            f"{data_dir}/known_hosts",
            interval=1.0,
            authorized_keys=ssh[0],
            host_key=ssh[1],
        )
        if ssh
        else None
    )
    member = ClusterMember(context, FolderSync(config))
    endpoint = MdpEndpoint(
        load_or_create_key(data_dir), ops, port=port, context=context, cluster=member.handle
    )
    await endpoint.start()
    print("ready", flush=True)
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, sys.stdin.read)
    await endpoint.close()
    print(json.dumps(dict(endpoint.counters)), flush=True)


asyncio.run(main(sys.argv[1], int(sys.argv[2]), sys.argv[3:5]))
