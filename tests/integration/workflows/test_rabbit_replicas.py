"""Seed 003 spoken by an outside AMQP client to two controller replicas (PostgreSQL + RabbitMQ)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from tests.integration.controller.conftest import PASSWORD, connected_fleet

from hwfleet.controller.app import Controller
from hwfleet.sim.profiles import generate
from hwfleet.store.graphs import GraphRepository

from .amqp_client import OutsideClient

pytestmark = [pytest.mark.rabbit, pytest.mark.postgres, pytest.mark.slow]


@asynccontextmanager
async def replica(name: str, data_dir: Path, pg: str, amqp: str) -> AsyncIterator[Controller]:
    from hwfleet.settings import ServerSettings

    ctl = Controller(
        ServerSettings(
            data_dir=str(data_dir),
            agent_listen="127.0.0.1:0",
            api_listen="127.0.0.1:0",
            db=pg,
            bus=amqp,
            replica_id=name,
            enroll_password=PASSWORD,
            call_timeout=5.0,
            graph_heartbeat=0.2,
            graph_lease=2.0,
        )
    )
    await ctl.start()
    try:
        yield ctl
    finally:
        await ctl.close()


def inline(label: str, base: str, options: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {
        "label": label,
        "taskDefinition": {
            "friendlyName": label,
            "injectableName": f"Task.Outside.{label}",
            "implementsTask": base,
            "options": options,
            "properties": {},
        },
        **extra,
    }


GRAPH = {
    "friendlyName": "Outside graph",
    "injectableName": "Graph.Outside.Check",
    "options": {"defaults": {"seconds": 1.5}},
    "tasks": [
        inline("ping", "Task.Base.Agent.Run", {"method": "ping", "params": {"n": 1}}),
        inline("rest", "Task.Base.Wait", {"seconds": 1}, waitOn={"ping": "succeeded"}),
        inline(
            "check", "Task.Base.Evaluate.Condition", {"when": "true"}, waitOn={"rest": "finished"}
        ),
    ],
}


async def test_outside_client_drives_two_replicas(
    pg_url: str, amqp_url: str, tmp_path: Path, deadline: float
) -> None:
    data = tmp_path / "ctl"
    async with (
        replica("a", data, pg_url, amqp_url) as a,
        replica("b", data, pg_url, amqp_url) as b,
        connected_fleet(a, generate(4, seed=3), 3, tmp_path, deadline) as fleet,
        OutsideClient(amqp_url) as client,
    ):
        nodes = [str(d.runtime.info.uuid) for d in fleet.devices]
        assert (await client.rpc("defineTaskGraph", {"definition": GRAPH}))["injectableName"] == (
            "Graph.Outside.Check"
        )
        library = await client.rpc("getTaskGraphLibrary", {})
        assert "Graph.Outside.Check" in [g["injectableName"] for g in library["graphs"]]
        task = {
            "friendlyName": "nap",
            "injectableName": "Task.Outside.Nap",
            "implementsTask": "Task.Base.Wait",
            "options": {"seconds": 0},
            "properties": {},
        }
        assert (await client.rpc("defineTask", {"definition": task}))["injectableName"] == (
            "Task.Outside.Nap"
        )
        tasks = (await client.rpc("getTaskLibrary", {}))["tasks"]
        assert "Task.Outside.Nap" in [t["injectableName"] for t in tasks]

        # A bad definition: an error reply naming the field; the server keeps serving.
        bad = {**GRAPH, "tasks": [inline("x", "Task.Base.Wait", {}, waitOn={"nope": "succeeded"})]}
        kind, body = await client.call(
            "task-graph-runner", "methods.defineTaskGraph", {"definition": bad}
        )
        assert kind == "error" and "tasks[0].waitOn.nope" in body["error"]["msg"]

        ids = {}
        for node in nodes[:3]:
            ids[node] = (
                await client.rpc("runTaskGraph", {"name": "Graph.Outside.Check", "target": node})
            )["graphId"]
        busy_kind, busy = await client.call(
            "task-graph-runner",
            "methods.runTaskGraph",
            {"name": "Graph.Outside.Check", "target": nodes[0]},
        )
        assert busy_kind == "error" and busy["error"]["code"] == "busy"
        active = await client.rpc("getActiveTaskGraph", {"target": nodes[0]})
        assert active["graph"]["graphId"] == ids[nodes[0]]
        exists = await client.rpc(f"activeTaskExists.{nodes[0]}", {}, exchange="task")
        assert exists == {"exists": True, "graphId": ids[nodes[0]]}

        finished = await client.until({f"graph.finished.{g}" for g in ids.values()}, 30)
        for graph_id in ids.values():
            assert finished[f"graph.finished.{graph_id}"]["data"]["status"] == "succeeded"
        async with a.store.tx() as tx:
            rows = await GraphRepository(tx.conn).tasks_of(list(ids.values()))
        assert len(rows) == 9 and all(r.state == "succeeded" and r.attempts == 1 for r in rows)
        # The ping tasks reach stream devices held by "a"; "b" gives those back unrun.
        assert {r.lease_owner for r in rows if r.label == "ping"} == {"a"}
        props = await client.rpc("getTaskGraphProperties", {"graphId": ids[nodes[0]]})
        assert props == {}

        # Cancel, pause and resume from outside.
        slow = {**GRAPH, "injectableName": "Graph.Outside.Slow"}
        await client.rpc("defineTaskGraph", {"definition": slow})
        run = await client.rpc(
            "runTaskGraph",
            {
                "name": "Graph.Outside.Slow",
                "target": nodes[3],
                "options": {"rest": {"seconds": 60}},
            },
        )
        assert (await client.rpc("pauseTaskGraph", run))["status"] == "paused"
        assert (await client.rpc("resumeTaskGraph", run))["status"] == "running"
        actives = await client.rpc("getActiveTaskGraphs", {})
        assert run["graphId"] in [g["graphId"] for g in actives["graphs"]]
        assert (await client.rpc("cancelTaskGraph", run))["status"] == "cancelled"
        end = await client.until({f"graph.finished.{run['graphId']}"}, 10)
        assert end[f"graph.finished.{run['graphId']}"]["data"]["status"] == "cancelled"
        kind, body = await client.call(
            "task-graph-runner", "methods.cancelTaskGraph", {"graphId": "nope"}
        )
        assert kind == "error" and body["error"]["code"] == "not_found"
        assert b.graphs.runner.running_on(nodes[3]) == []


async def test_bootstrap_commands_over_the_task_exchange(
    pg_url: str, amqp_url: str, tmp_path: Path
) -> None:
    from tests.integration.controller.conftest import add_offline_device

    node = "0b0b0b0b-0000-4000-8000-00000000000b"
    async with (
        replica("solo", tmp_path / "ctl", pg_url, amqp_url) as ctl,
        OutsideClient(amqp_url) as client,
    ):
        await add_offline_device(ctl, node)
        graph = {
            "friendlyName": "bootstrap",
            "injectableName": "Graph.Outside.Bootstrap",
            "tasks": [
                inline(
                    "cmds", "Task.Base.Linux.Commands", {"commands": ["uname -a", {"cmd": "true"}]}
                )
            ],
        }
        await client.rpc("defineTaskGraph", {"definition": graph})
        run = await client.rpc("runTaskGraph", {"name": "Graph.Outside.Bootstrap", "target": node})
        wanted: dict[str, Any] = {}
        for _ in range(50):  # the runner claims the task within its poll period
            wanted = await client.rpc(f"requestCommands.{node}", {}, exchange="task")
            if wanted["identifier"]:
                break
            await client.until(set(), 0.1)
        assert wanted["tasks"] == [{"cmd": "uname -a"}, {"cmd": "true"}]
        kind, body = await client.call(
            "task", f"methods.respondCommands.{node}", {"identifier": "other", "tasks": []}
        )
        assert kind == "error" and body["error"]["code"] == "not_found"
        output = [
            {"cmd": "uname -a", "stdout": "Linux", "exitCode": 0},
            {"cmd": "true", "exitCode": 0},
        ]
        accepted = await client.rpc(
            f"respondCommands.{node}",
            {"identifier": wanted["identifier"], "tasks": output},
            exchange="task",
        )
        assert accepted["accepted"] is True
        done = await ctl.graphs.engine.wait(run["graphId"], 10)
        assert done is not None and done["status"] == "succeeded"
