"""A node's own credential for the bootstrap pair over HTTPS: its commands, while its graph runs.

A real controller (SQLite, memory bus) and its real REST API over loopback HTTP; the nodes
are stored devices that are not connected (``Task.Base.Linux.Commands`` needs no agent).
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
from tests.integration.controller.conftest import add_offline_device

from hwfleet.controller.app import Controller
from hwfleet.workflows.nodecreds import NodeCredentials

NODE_A = "0a0a0a0a-0000-4000-8000-00000000000a"
NODE_B = "0b0b0b0b-0000-4000-8000-00000000000b"

GRAPH = {
    "friendlyName": "bootstrap with a boot profile",
    "injectableName": "Graph.Test.NodeCommands",
    "options": {"defaults": {"bootProfile": {"profile": "installer", "options": {"x": "1"}}}},
    "tasks": [
        {
            "label": "cmds",
            "taskDefinition": {
                "friendlyName": "cmds",
                "injectableName": "Task.Test.NodeCommands",
                "implementsTask": "Task.Base.Linux.Commands",
                "options": {"commands": ["uname -a"]},
                "properties": {},
            },
        }
    ],
}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def wanted(api: httpx.AsyncClient, node: str, token: str) -> dict[str, Any]:
    """requestCommands until the runner has claimed the node's task (its poll is 0.5 s)."""
    async with asyncio.timeout(10):
        while True:
            got = await api.get(f"/api/v1/nodes/{node}/commands", headers=bearer(token))
            assert got.status_code == 200, got.text
            if got.json()["identifier"]:
                return dict(got.json())
            await asyncio.sleep(0.1)  # polling the route under test, bounded above


async def test_a_node_credential_reaches_only_its_own_commands(controller: Controller) -> None:
    for i, node in enumerate((NODE_A, NODE_B)):
        await add_offline_device(controller, node, serial=9000 + i)
    op = bearer(controller.operator_token)
    async with httpx.AsyncClient(base_url=controller.api_url, timeout=10) as api:
        assert (await api.post("/api/v1/graph-library", json=GRAPH, headers=op)).status_code == 201
        run = await api.post(
            "/api/v1/graphs",
            json={"name": GRAPH["injectableName"], "nodes": [NODE_A, NODE_B]},
            headers=op,
        )
        ga, gb = (g["graphId"] for g in run.json()["graphs"])
        cred = await api.get(f"/api/v1/graphs/{ga}/node-credential", headers=op)
        assert cred.status_code == 200 and cred.json()["node"] == NODE_A
        token_a = cred.json()["token"]
        token_b = (await api.get(f"/api/v1/graphs/{gb}/node-credential", headers=op)).json()[
            "token"
        ]

        # The boot profile of the node's active graph carries the same credential.
        profile = await controller.bus.call("task", f"getBootProfile.{NODE_A}", {}, timeout=5)
        assert profile["profile"] == "installer"
        assert profile["options"] == {"x": "1", "commandsToken": token_a}

        mine = await wanted(api, NODE_A, token_a)
        assert mine["tasks"] == [{"cmd": "uname -a"}]
        theirs = await wanted(api, NODE_B, token_b)

        # Another node's commands: neither read nor answered.
        got = await api.get(f"/api/v1/nodes/{NODE_B}/commands", headers=bearer(token_a))
        assert got.status_code == 401
        answer = {"identifier": theirs["identifier"], "tasks": [{"cmd": "x", "exitCode": 0}]}
        posted = await api.post(
            f"/api/v1/nodes/{NODE_B}/commands", json=answer, headers=bearer(token_a)
        )
        assert posted.status_code == 401
        # Its own route with another node's identifier: not its task.
        posted = await api.post(
            f"/api/v1/nodes/{NODE_A}/commands", json=answer, headers=bearer(token_a)
        )
        assert posted.status_code == 404

        # No other API, not even the graph it belongs to.
        for method, path in (
            ("GET", "/api/v1/devices"),
            ("GET", "/api/v1/graphs"),
            ("GET", f"/api/v1/graphs/{ga}"),
            ("GET", f"/api/v1/graphs/{ga}/node-credential"),
            ("POST", f"/api/v1/graphs/{ga}/cancel"),
            ("POST", "/api/v1/graph-library"),
            ("GET", "/api/v1/events"),
            ("GET", f"/api/v1/nodes/{NODE_A}/commands/extra"),
            ("DELETE", f"/api/v1/nodes/{NODE_A}/commands"),
        ):
            refused = await api.request(method, path, headers=bearer(token_a), json={})
            assert refused.status_code == 401, (method, path, refused.status_code)

        # Forgeries: the right shape under another key, or A's MAC moved to B's graph.
        forged = NodeCredentials("not-the-operator-token").mint(ga, NODE_A)
        moved = f"hwn1.{gb}.{token_a.rsplit('.', 1)[1]}"
        for token in (forged, moved, token_a + "x", "hwn1..", "hwn1.a.b.c"):
            got = await api.get(f"/api/v1/nodes/{NODE_A}/commands", headers=bearer(token))
            assert got.status_code == 401, token

        # The node answers its own commands; the graph ends and the credential with it.
        done = {"identifier": mine["identifier"], "tasks": [{"cmd": "uname -a", "exitCode": 0}]}
        posted = await api.post(
            f"/api/v1/nodes/{NODE_A}/commands", json=done, headers=bearer(token_a)
        )
        assert posted.status_code == 200 and posted.json()["accepted"] is True
        ended = await controller.graphs.engine.wait(ga, 10)
        assert ended is not None and ended["status"] == "succeeded"
        got = await api.get(f"/api/v1/nodes/{NODE_A}/commands", headers=bearer(token_a))
        assert got.status_code == 401
        got = await api.get(f"/api/v1/graphs/{ga}/node-credential", headers=op)
        assert got.status_code == 409

        # Cancelling B's graph revokes B's credential at once.
        assert (await api.post(f"/api/v1/graphs/{gb}/cancel", headers=op)).status_code == 200
        got = await api.get(f"/api/v1/nodes/{NODE_B}/commands", headers=bearer(token_b))
        assert got.status_code == 401
        # The operator token still reaches the pair.
        got = await api.get(f"/api/v1/nodes/{NODE_B}/commands", headers=op)
        assert got.status_code == 200 and got.json() == {"identifier": None, "tasks": []}
