"""An agent task on a node the store records online but that is not connected to this
replica (after a controller restart, or while its link moves between replicas): the task
waits for the node to connect, up to the grace, instead of failing a graph that the
reconnect should only have delayed. A node recorded offline fails at once."""

from __future__ import annotations

from pathlib import Path

from tests.integration.controller.conftest import add_offline_device, sim_fleet
from tests.integration.workflows.test_node_offline import until_running

from hwfleet.controller.app import Controller
from hwfleet.controller.graph_agent import RECONNECT_GRACE
from hwfleet.sim.profiles import generate
from hwfleet.types import utcnow

GRAPH = {
    "friendlyName": "Ping once",
    "injectableName": "Graph.Test.PingOnce",
    "tasks": [{"label": "ping", "taskName": "Task.Hwfleet.Ping"}],
}
SEED = 21


async def test_a_task_waits_for_a_node_recorded_online_to_connect(
    controller: Controller, tmp_path: Path, deadline: float
) -> None:
    engine = controller.graphs.engine
    await engine.define_graph(GRAPH)
    sim = sim_fleet(controller, generate(1, seed=SEED), SEED, tmp_path / "late")
    node = str(sim.devices[0].runtime.info.uuid)
    await add_offline_device(controller, node)
    async with controller.store.tx() as tx:
        await tx.devices.set_online(node, True, utcnow())  # as a restart leaves it
    assert not await controller.devices.reachable(node)

    graph_id = await engine.run(GRAPH["injectableName"], node, {})
    await until_running(controller, node)  # the ping task runs, its node not connected
    await sim.start()  # the device comes back
    try:
        graph = await engine.wait(graph_id, deadline)
    finally:
        await sim.close()
    assert graph is not None and graph["status"] == "succeeded", graph
    [task] = graph["tasks"]
    assert task["state"] == "succeeded"


async def test_a_task_on_a_node_recorded_offline_fails_at_once(controller: Controller) -> None:
    engine = controller.graphs.engine
    await engine.define_graph(GRAPH)
    node = "5f0c4d6e-0000-4000-8000-00000000d00d"
    await add_offline_device(controller, node)

    graph_id = await engine.run(GRAPH["injectableName"], node, {})
    # Well inside the grace: a task that waited for this node would still be running.
    graph = await engine.wait(graph_id, RECONNECT_GRACE / 3)
    assert graph is not None and graph["status"] == "failed", graph
    [task] = graph["tasks"]
    assert "not connected" in task.get("error", ""), task
