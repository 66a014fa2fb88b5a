"""`hwfleet graphs` / `hwfleet skus` as an operator runs them, over the real REST API."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
from tests.integration.controller.conftest import cli

from hwfleet.controller.app import Controller
from hwfleet.sim.fleet import SimFleet


async def test_define_run_wait_status_over_the_cli(
    controller: Controller, fleet: SimFleet, tmp_path: Path
) -> None:
    code, out, err = await cli(controller, "graphs", "list", "--json")
    assert code == 0, err
    assert "Graph.Hwfleet.Reimage" in [g["injectableName"] for g in json.loads(out)]

    good = tmp_path / "g.json"
    good.write_text(
        json.dumps(
            {
                "friendlyName": "Ping twice",
                "injectableName": "Graph.Test.PingTwice",
                "tasks": [
                    {"label": "one", "taskName": "Task.Hwfleet.Ping"},
                    {
                        "label": "two",
                        "taskName": "Task.Hwfleet.Ping",
                        "waitOn": {"one": "succeeded"},
                    },
                ],
            }
        )
    )
    code, out, err = await cli(controller, "graphs", "define", str(good))
    assert code == 0 and "Graph.Test.PingTwice" in out, err

    node = str(fleet.devices[0].runtime.info.uuid)
    code, out, err = await cli(
        controller, "graphs", "run", "Graph.Test.PingTwice", "--node", node, "--wait", "--json"
    )
    assert code == 0, (out, err)
    result = json.loads(out)
    [finished] = result["finished"]
    assert finished["status"] == "succeeded" and finished["target"] == node

    code, out, err = await cli(controller, "graphs", "status", finished["graphId"], "--json")
    assert code == 0 and json.loads(out)["status"] == "succeeded"

    bad = tmp_path / "bad.json"
    bad.write_text(
        json.dumps(
            {
                "injectableName": "Graph.Test.Bad",
                "tasks": [
                    {"label": "a", "taskName": "Task.Hwfleet.Ping", "waitOn": {"a": "succeeded"}}
                ],
            }
        )
    )
    code, out, err = await cli(controller, "graphs", "define", str(bad))
    assert code == 1 and "tasks[0].waitOn.a" in err and "cycle" in err

    # Explicit targets only: no target at all is refused.
    code, out, err = await cli(controller, "graphs", "run", "Graph.Test.PingTwice")
    assert code == 1 and "exactly one of" in err


async def test_skus_and_run_by_sku_over_rest(
    controller: Controller, fleet: SimFleet, tmp_path: Path
) -> None:
    sku = tmp_path / "sku.json"
    sku.write_text(
        json.dumps({"name": "any", "rules": [{"path": "interfaces", "notContains": "x"}]})
    )
    node = str(fleet.devices[1].runtime.info.uuid)
    graph_id = await controller.graphs.engine.run("Graph.Hwfleet.Discovery", node)
    assert (await controller.graphs.engine.wait(graph_id, 20) or {})["status"] == "succeeded"
    code, out, err = await cli(controller, "skus", "define", str(sku))
    assert code == 0, err
    code, out, err = await cli(controller, "skus", "show", "any", "--json")
    assert code == 0 and node in json.loads(out)["nodes"]

    headers = {"Authorization": f"Bearer {controller.operator_token}"}
    async with httpx.AsyncClient(base_url=controller.api_url, headers=headers) as http:
        reply = await http.post(
            "/api/v1/graphs", json={"name": "Graph.Hwfleet.Discovery", "sku": "any"}
        )
        assert reply.status_code == 201, reply.text
        [started] = reply.json()["graphs"]
        assert started["node"] == node
        done = await http.get(f"/api/v1/graphs/{started['graphId']}", params={"wait": 20})
        assert done.json()["status"] == "succeeded"
        bad = await http.post(
            "/api/v1/skus", json={"name": "x", "rules": [{"path": "a", "min": "z"}]}
        )
        assert bad.status_code == 422 and bad.json()["detail"]["field"] == "rules[0].min"
        anon = await http.get("/api/v1/graphs", headers={"Authorization": "Bearer nope"})
        assert anon.status_code == 401
