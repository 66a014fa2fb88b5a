"""An agent task on a node recorded offline fails at once: the reconnect grace (waiting up to
30 s for a node the store records online) is not spent on it.

A test that a node recorded online is waited for was tried and dropped: on a sole controller
the runner gives such a task back (another replica may hold the node's link) before the
grace applies, so the test passed with the wait removed (README, "Not built yet")."""

from __future__ import annotations

from tests.integration.controller.conftest import add_offline_device

from hwfleet.controller.app import Controller
from hwfleet.controller.graph_agent import RECONNECT_GRACE

GRAPH = {
    "friendlyName": "Ping once",
    "injectableName": "Graph.Test.PingOnce",
    "tasks": [{"label": "ping", "taskName": "Task.Hwfleet.Ping"}],
}


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
