"""The graph engine against a real controller and simulated agents (real round trips)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from hwfleet.controller.app import Controller
from hwfleet.sim.fleet import SimFleet
from hwfleet.workflows.engine import EngineError


def uuid_of(fleet: SimFleet, i: int) -> str:
    return str(fleet.devices[i].runtime.info.uuid)


async def event_keys(controller: Controller) -> list[str]:
    async with controller.store.tx() as tx:
        return [e.routing_key for e in await tx.events.list(limit=1000)]


async def test_discovery_graph_runs_agent_methods_and_assigns_a_sku(
    controller: Controller, fleet: SimFleet
) -> None:
    engine = controller.graphs.engine
    node = uuid_of(fleet, 0)
    await controller.graphs.define_sku(
        {"name": "sim-box", "rules": [{"path": "interfaces", "notContains": "nothing"}]}
    )
    graph_id = await engine.run("Graph.Hwfleet.Discovery", node)
    graph = await engine.wait(graph_id, 20)
    assert graph is not None and graph["status"] == "succeeded", graph
    assert [t["state"] for t in graph["tasks"]] == ["succeeded"] * 3
    assert await controller.graphs.sku_of(node) == "sim-box"
    keys = await event_keys(controller)
    assert f"graph.started.{graph_id}" in keys and f"graph.finished.{graph_id}" in keys
    assert f"sku.assigned.{node}" in keys
    for task in graph["tasks"]:
        assert keys.count(f"task.finished.{task['taskId']}") == 1


def chain(name: str, *tasks: dict[str, Any]) -> dict[str, Any]:
    return {"friendlyName": name, "injectableName": name, "tasks": list(tasks)}


async def test_long_agent_task_failure_skips_successors_and_fails_graph(
    controller: Controller, fleet: SimFleet
) -> None:
    engine = controller.graphs.engine
    await engine.define_graph(
        chain(
            "Graph.Test.Qc",
            {
                "label": "qc",
                "taskName": "Task.Hwfleet.Decom.Qc",
            },
            {"label": "after", "taskName": "Task.Hwfleet.Ping", "waitOn": {"qc": "succeeded"}},
            {"label": "cleanup", "taskName": "Task.Hwfleet.Ping", "waitOn": {"qc": "failed"}},
        )
    )
    # The simulated device fails qc on a NIC count it does not have.
    graph_id = await engine.run(
        "Graph.Test.Qc", uuid_of(fleet, 1), {"qc": {"params": {"spec": {"nic_count": 99}}}}
    )
    graph = await engine.wait(graph_id, 20)
    assert graph is not None and graph["status"] == "failed"
    states = {t["label"]: t["state"] for t in graph["tasks"]}
    assert states == {"qc": "failed", "after": "cancelled", "cleanup": "succeeded"}
    errors = {t["label"]: t.get("error", "") for t in graph["tasks"]}
    assert "nic_count" in errors["qc"] and errors["after"].startswith("skipped")


async def test_one_active_graph_per_node_and_cancel_within_a_second(
    controller: Controller, fleet: SimFleet
) -> None:
    engine = controller.graphs.engine
    await engine.define_graph(
        chain("Graph.Test.Sleep", {"label": "w", "taskName": "Task.Hwfleet.Wait"})
    )
    node = uuid_of(fleet, 2)
    graph_id = await engine.run("Graph.Test.Sleep", node, {"w": {"seconds": 60}})
    with pytest.raises(EngineError, match="already runs"):
        await engine.run("Graph.Test.Sleep", node)
    loop = asyncio.get_running_loop()
    start = loop.time()
    assert (await engine.cancel(graph_id))["status"] == "cancelled"
    graph = await engine.wait(graph_id, 5)
    assert graph is not None and graph["tasks"][0]["state"] == "cancelled"
    assert loop.time() - start < 1.0
    assert not controller.graphs.runner.running_on(node)
    # The node is free again.
    second = await engine.run("Graph.Test.Sleep", node, {"w": {"seconds": 0}})
    done = await engine.wait(second, 10)
    assert done is not None and done["status"] == "succeeded"


async def test_timeout_ends_in_timeout(controller: Controller, fleet: SimFleet) -> None:
    engine = controller.graphs.engine
    await engine.define_graph(
        chain("Graph.Test.Slow", {"label": "w", "taskName": "Task.Hwfleet.Wait", "timeout": 0.2})
    )
    graph_id = await engine.run("Graph.Test.Slow", uuid_of(fleet, 0), {"w": {"seconds": 30}})
    graph = await engine.wait(graph_id, 10)
    assert graph is not None and graph["status"] == "failed"
    assert graph["tasks"][0]["state"] == "timeout"


async def test_pause_holds_next_task_until_resume(controller: Controller, fleet: SimFleet) -> None:
    engine = controller.graphs.engine
    await engine.define_graph(
        chain(
            "Graph.Test.Two",
            {"label": "a", "taskName": "Task.Hwfleet.Wait"},
            {"label": "b", "taskName": "Task.Hwfleet.Ping", "waitOn": {"a": "succeeded"}},
        )
    )
    graph_id = await engine.run("Graph.Test.Two", uuid_of(fleet, 0), {"a": {"seconds": 0.3}})
    assert (await engine.pause(graph_id))["status"] == "paused"
    held = await engine.wait(graph_id, 1.5)
    assert held is not None and held["status"] == "paused"
    # Paused before or after "a" was claimed, "b" never starts while paused.
    assert held["tasks"][1]["state"] == "pending"
    assert (await engine.resume(graph_id))["status"] == "running"
    done = await engine.wait(graph_id, 10)
    assert done is not None and done["status"] == "succeeded"


async def test_offline_node_fails_the_task_with_the_reason(controller: Controller) -> None:
    from tests.integration.controller.conftest import add_offline_device

    await add_offline_device(controller, "0f0f0f0f-0000-4000-8000-000000000001")
    engine = controller.graphs.engine
    graph_id = await engine.run("Graph.Hwfleet.Discovery", "0f0f0f0f-0000-4000-8000-000000000001")
    graph = await engine.wait(graph_id, 10)
    assert graph is not None and graph["status"] == "failed"
    assert "not connected" in graph["tasks"][0]["error"]
    with pytest.raises(EngineError, match="unknown node"):
        await engine.run("Graph.Hwfleet.Discovery", "no-such-node")


async def test_a_new_deeper_sku_reassigns_and_runs_its_discovery_graph(
    controller: Controller, fleet: SimFleet
) -> None:
    engine = controller.graphs.engine
    node = uuid_of(fleet, 1)
    first = await engine.run("Graph.Hwfleet.Discovery", node)
    assert (await engine.wait(first, 20) or {})["status"] == "succeeded"
    await controller.graphs.define_sku(
        {"name": "shallow", "rules": [{"path": "interfaces", "notContains": "x"}]}
    )
    assert await controller.graphs.sku_of(node) == "shallow"
    await engine.define_graph(
        chain("Graph.Test.AfterSku", {"label": "p", "taskName": "Task.Hwfleet.Ping"})
    )
    await controller.graphs.define_sku(
        {
            "name": "deeper",
            "rules": [{"path": "interfaces.0.mac", "regex": "."}],
            "discoveryGraphName": "Graph.Test.AfterSku",
        }
    )
    assert await controller.graphs.sku_of(node) == "deeper"
    [ran] = [g for g in await engine.list(node=node) if g["name"] == "Graph.Test.AfterSku"]
    assert (await engine.wait(ran["graphId"], 20) or {})["status"] == "succeeded"
    keys = await event_keys(controller)
    assert keys.count(f"sku.assigned.{node}") == 2


async def test_the_same_rpcs_on_the_memory_bus(controller: Controller, fleet: SimFleet) -> None:
    from hwfleet.bus.base import RpcError

    bus = controller.bus
    node = uuid_of(fleet, 0)
    library = await bus.call("task-graph-runner", "getTaskGraphLibrary", {})
    assert "Graph.Hwfleet.BurnIn" in [g["injectableName"] for g in library["graphs"]]
    run = await bus.call(
        "task-graph-runner",
        "runTaskGraph",
        {"name": "Graph.Hwfleet.BurnIn", "target": node, "options": {"soak": {"seconds": 30}}},
    )
    exists = await bus.call("task", f"activeTaskExists.{node}", {})
    assert exists == {"exists": True, "graphId": run["graphId"]}
    with pytest.raises(RpcError) as refused:
        await bus.call("task-graph-runner", "runTaskGraph", {"name": "Graph.Nope", "target": node})
    assert refused.value.code == "not_found"
    cancelled = await bus.call("task-graph-runner", "cancelTaskGraph", run)
    assert cancelled == {"graphId": run["graphId"], "status": "cancelled"}
    assert (await bus.call("task", f"activeTaskExists.{node}", {}))["exists"] is False
