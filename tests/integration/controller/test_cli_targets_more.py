"""Targets on every command (graphs, maintenance), the ``sku`` fact, numeric comparisons,
the tasks table's device names and the retention view: a real controller, simulated
devices over loopback sockets, and the `hwfleet` command line in a subprocess."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest

from hwfleet.controller.app import Controller
from hwfleet.controller.events import utcnow
from hwfleet.sim.fleet import SimFleet

from .conftest import add_offline_device, cli, connected_fleet
from .test_cli_targets import complete, racks


@pytest.fixture
async def rack_fleet(
    controller: Controller, deadline: float, tmp_path: Path
) -> AsyncIterator[SimFleet]:
    async with connected_fleet(controller, racks(6), 22, tmp_path, deadline) as sim:
        yield sim


async def selected(controller: Controller, *target: str) -> list[str]:
    code, out, err = await cli(controller, "targets", *target, "--json")
    assert code == 0, err
    return [d["name"] for d in json.loads(out)["devices"]]


async def test_numeric_comparisons_select_and_point_at_faults(controller: Controller) -> None:
    for i, st_id in enumerate((-1, 0, 15, 16, 40)):
        uuid = f"00000000-0000-4000-8000-{i:012d}"
        await add_offline_device(controller, uuid, 100 + i, f"st{st_id}", st_id)
    assert await selected(controller, "st_id<0") == ["st-1"]
    assert await selected(controller, "st_id>=16") == ["st16", "st40"]
    assert await selected(controller, "st_id>0 and st_id<=16") == ["st15", "st16"]
    assert await selected(controller, "not st_id>=16") == ["st-1", "st0", "st15"]
    code, _, err = await cli(controller, "targets", "st_id>=high")
    assert code == 1 and "expected a number after '>='" in err
    assert err.rstrip().splitlines()[-1] == "  " + " " * len("st_id>=") + "^"
    code, _, err = await cli(controller, "targets", "bogus<3")
    assert code == 1 and "unknown field 'bogus'" in err


async def test_graphs_run_over_a_target_and_its_dry_run(
    controller: Controller, rack_fleet: SimFleet
) -> None:
    code, out, err = await cli(
        controller, "graphs", "run", "Graph.Hwfleet.Discovery", "rack1-*", "--dry-run", "--json"
    )
    assert code == 0, err
    assert [d["name"] for d in json.loads(out)["devices"]] == ["rack1-u1", "rack1-u4"]
    code, out, err = await cli(controller, "graphs", "status", "--json")
    assert code == 0 and json.loads(out) == [], "a dry run starts nothing"

    code, out, err = await cli(
        controller, "graphs", "run", "Graph.Hwfleet.Discovery", "rack1-*", "--wait", "--json"
    )
    assert code == 0, (out, err)
    doc = json.loads(out)
    by_name = {d.runtime.info.name: d.runtime.info.uuid for d in rack_fleet.devices}
    assert sorted(g["node"] for g in doc["graphs"]) == sorted(
        [by_name["rack1-u1"], by_name["rack1-u4"]]
    )
    assert {g["status"] for g in doc["finished"]} == {"succeeded"}

    code, _, err = await cli(controller, "graphs", "run", "Graph.Hwfleet.Discovery", "nobody-*")
    assert code == 1 and "selects no devices" in err
    code, _, err = await cli(
        controller, "graphs", "run", "Graph.Hwfleet.Discovery", "rack1-*", "--all"
    )
    assert code == 1 and "not both" in err
    code, out, err = await cli(
        controller, "graphs", "run", "Graph.Hwfleet.Discovery", "--all", "--dry-run", "--json"
    )
    assert code == 0 and json.loads(out)["count"] == 6, "--all: every online node"


async def test_sku_is_a_fact_a_column_and_a_filter(
    controller: Controller, rack_fleet: SimFleet, tmp_path: Path
) -> None:
    for name in ("rack0-u0", "rack2-u2"):
        code, out, err = await cli(
            controller, "graphs", "run", "Graph.Hwfleet.Discovery", name, "--wait", "--json"
        )
        assert code == 0, (out, err)
    sku = tmp_path / "sku.json"
    sku.write_text(
        json.dumps({"name": "gpu-node", "rules": [{"path": "interfaces", "notContains": "x"}]})
    )
    code, _, err = await cli(controller, "skus", "define", str(sku))
    assert code == 0, err
    assert await selected(controller, "sku=gpu-node") == ["rack0-u0", "rack2-u2"]
    assert await selected(controller, "rack0-* and not sku=gpu-*") == ["rack0-u3"]

    code, out, err = await cli(controller, "devices", "--columns", "name,sku")
    assert code == 0, err
    row = next(line for line in out.splitlines() if "rack2-u2" in line)
    assert "gpu-node" in row
    assert "gpu-node" not in next(line for line in out.splitlines() if "rack1-u1" in line)
    code, out, err = await cli(controller, "devices", "sku=gpu-node", "--columns", "name,sku")
    assert code == 0, err
    assert "2 devices" in out and "rack0-u0" in out and "rack1-u1" not in out
    code, out, err = await cli(controller, "devices", "sku=gpu-node", "--json")
    assert code == 0 and [d["name"] for d in json.loads(out)] == ["rack0-u0", "rack2-u2"]

    code, out, err = await cli(
        controller, "graphs", "run", "Graph.Hwfleet.Discovery", "--sku", "gpu-node", "--dry-run"
    )
    assert code == 0 and "2 devices" in out, err


async def test_maintenance_over_a_target_in_batches(
    controller: Controller, rack_fleet: SimFleet
) -> None:
    code, out, err = await cli(
        controller, "device", "maintenance", "on", "rack1-*,rack2-u5", "--batch", "2", "--json"
    )
    assert code == 0, err
    doc = json.loads(out)
    assert doc["method"] == "device.maintenance" and doc["batch_size"] == 2
    assert sorted(r["batch"] for r in doc["devices"].values()) == [1, 1, 2]
    assert all(r["result"] == {"maintenance": True, "st_id": -1} for r in doc["devices"].values())
    on = {d.runtime.info.name for d in rack_fleet.devices if d.runtime.st_id() == -1}
    assert on == {"rack1-u1", "rack1-u4", "rack2-u5"}

    code, out, err = await cli(controller, "device", "maintenance", "off", "--dry-run", "rack1-*")
    assert code == 0 and "2 devices" in out, err
    assert {d.runtime.info.name for d in rack_fleet.devices if d.runtime.st_id() == -1} == on

    code, out, err = await cli(controller, "device", "maintenance", "off", "rack1-*")
    assert code == 0, err
    assert "device.maintenance on 2 devices: 2 complete" in out
    assert {d.runtime.info.name for d in rack_fleet.devices if d.runtime.st_id() == -1} == {
        "rack2-u5"
    }


async def test_tasks_table_names_devices(controller: Controller, rack_fleet: SimFleet) -> None:
    code, out, err = await cli(controller, "run", "rack0-*", "decom.qc", "--batch", "2", "--json")
    assert code == 0, err
    code, out, err = await cli(controller, "tasks", COLUMNS="200")
    assert code == 0, err
    rows = [line for line in out.splitlines() if "decom.qc" in line]
    assert len(rows) == 2
    assert {row.split("│")[2].strip() for row in rows} == {"rack0-u0", "rack0-u3"}


async def test_retention_counts_are_visible(controller: Controller, rack_fleet: SimFleet) -> None:
    code, out, err = await cli(controller, "retention", "--json")
    assert code == 0, err
    before = json.loads(out)
    assert before["events_days"] == 30 and before["tasks_days"] == 30 and before["enabled"]
    code, _, err = await cli(controller, "run", "rack0-u0", "decom.qc", "--wait")
    assert code == 0, err
    # Sixty days on, every event and the finished task are past their age.
    counts = await controller.pruner.prune_once(utcnow() + timedelta(days=60))
    assert counts["events"] > 0 and counts["tasks"] == 1
    code, out, err = await cli(controller, "retention", "--json")
    after = json.loads(out)
    assert after["last"] == counts and after["runs"] == before["runs"] + 1
    assert after["total"]["tasks"] == before["total"]["tasks"] + 1
    code, out, err = await cli(controller, "retention")
    assert code == 0 and f"{counts['events']} events, 1 tasks deleted" in out, err


async def test_server_takes_retention_flags(tmp_path: Path, controller: Controller) -> None:
    code, _, err = await cli(
        controller,
        *("server", "--data-dir", str(tmp_path / "s"), "--retention-events-days", "-1"),
    )
    assert code == 1 and "retention_events_days" in err


async def test_targets_complete_on_graphs_power_and_maintenance(
    controller: Controller, rack_fleet: SimFleet
) -> None:
    rack2 = ["rack2-u2", "rack2-u5"]
    assert await complete(controller, "hwfleet graphs run Graph.Hwfleet.Discovery rack2-u") == rack2
    assert await complete(controller, "hwfleet power off rack2-u") == rack2
    assert await complete(controller, "hwfleet sel rack2-u") == rack2
    assert await complete(controller, "hwfleet device maintenance on rack2-u") == rack2


async def test_retention_needs_the_operator_token(controller: Controller) -> None:
    import httpx

    async with httpx.AsyncClient(base_url=controller.api_url) as http:
        assert (await http.get("/api/v1/retention")).status_code == 401
        headers = {"Authorization": f"Bearer {controller.operator_token}"}
        reply = await http.get("/api/v1/retention", headers=headers)
        assert reply.status_code == 200 and reply.json()["interval_seconds"] == 3600
