"""A node that goes offline while a graph task runs on it: the task fails with the reason."""

from __future__ import annotations

import asyncio

from tests.integration.workflows.test_boot_profile import GRAPH

from hwfleet.controller.app import Controller
from hwfleet.sim.fleet import SimFleet


async def until_running(controller: Controller, node: str) -> None:
    """Until this replica runs a task on ``node`` (claims are not events: a bounded poll)."""
    async with asyncio.timeout(10):
        while not controller.graphs.runner.running_on(node):  # noqa: ASYNC110
            await asyncio.sleep(0.02)


async def test_node_going_offline_mid_task_fails_it_with_the_reason(
    controller: Controller, fleet: SimFleet
) -> None:
    engine = controller.graphs.engine
    device = fleet.devices[2]
    node = str(device.runtime.info.uuid)
    await engine.define_graph(GRAPH)
    graph_id = await engine.run(GRAPH["injectableName"], node, {"a": {"seconds": 60}})
    await until_running(controller, node)
    device.link.stop()  # the machine drops off the network mid-task
    graph = await engine.wait(graph_id, 10)
    assert graph is not None and graph["status"] == "failed"
    states = {t["label"]: (t["state"], t.get("error", "")) for t in graph["tasks"]}
    assert states["a"] == ("failed", f"node {node} disappeared: the device went offline")
    assert states["b"][0] == "cancelled"
