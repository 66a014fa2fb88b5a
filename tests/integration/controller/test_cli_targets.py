"""Targets, groups, --dry-run and rolling runs: a real controller, simulated devices over
loopback sockets, and the `hwfleet` command line in a subprocess."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import msgspec
import pytest

from hwfleet.controller.app import Controller
from hwfleet.sim.fleet import SimFleet
from hwfleet.sim.profiles import Profile, generate

from .conftest import add_offline_device, cli, connected_fleet

OFFLINE = "00000000-0000-4000-8000-0000000000ff"


def racks(count: int) -> Profile:
    """``count`` devices named rack{i%3}-u{i}; odd ones are model X11-A, even ones X9-B."""
    base = generate(count, seed=21)
    return Profile(
        devices=[
            msgspec.structs.replace(
                d, name=f"rack{i % 3}-u{i}", model_id="X11-A" if i % 2 else "X9-B"
            )
            for i, d in enumerate(base.devices)
        ]
    )


@pytest.fixture
async def rack_fleet(
    controller: Controller, deadline: float, tmp_path: Path
) -> AsyncIterator[SimFleet]:
    async with connected_fleet(controller, racks(9), 21, tmp_path, deadline) as sim:
        yield sim


async def names(controller: Controller, *target: str) -> list[str]:
    code, out, err = await cli(controller, "targets", *target, "--json")
    assert code == 0, err
    doc = json.loads(out)
    assert doc["count"] == len(doc["devices"])
    return [d["name"] for d in doc["devices"]]


async def test_select_by_glob_fact_list_prefix_and_compound(
    controller: Controller, rack_fleet: SimFleet
) -> None:
    await add_offline_device(controller, OFFLINE)
    assert await names(controller, "rack1-*") == ["rack1-u1", "rack1-u4", "rack1-u7"]
    assert await names(controller, "rack1-u1,rack2-u2") == ["rack1-u1", "rack2-u2"]
    assert await names(controller, "rack1-u1", "rack2-u2") == ["rack1-u1", "rack2-u2"]
    assert await names(controller, "state=offline") == ["offline-9999"]
    assert await names(controller, "rack1-* and not model_id=X9*") == ["rack1-u1", "rack1-u7"]
    assert await names(controller, "(rack0-*", "or", "rack1-*)", "and", "model_id=X9-B") == [
        "rack0-u0",
        "rack0-u6",
        "rack1-u4",
    ]
    assert len(await names(controller, "--all")) == 10
    one = rack_fleet.devices[3].runtime.info.uuid
    assert await names(controller, one[:8]) == ["rack0-u3"]

    code, _, err = await cli(controller, "targets", "rack1-* and (state=online")
    assert code == 1
    assert "expected ')'" in err and "position" in err and err.rstrip().endswith("^")
    code, _, err = await cli(controller, "targets", "rack=1")
    assert code == 1 and "unknown field 'rack'" in err
    assert await names(controller, "sku=gpu-node") == [], "no SKU assigned yet"


async def test_groups_expression_and_static(controller: Controller, rack_fleet: SimFleet) -> None:
    code, out, err = await cli(controller, "groups", "add", "rack1", "name=rack1-*")
    assert code == 0, err
    code, out, err = await cli(
        controller, "groups", "add", "picked", "--member", "rack0-u0", "--member", "rack2-u8"
    )
    assert code == 0, err
    assert await names(controller, "G@rack1 and model_id=X11*") == ["rack1-u1", "rack1-u7"]
    assert await names(controller, "G@picked or G@rack1") == [
        "rack0-u0",
        "rack1-u1",
        "rack1-u4",
        "rack1-u7",
        "rack2-u8",
    ]
    code, out, err = await cli(controller, "groups", "list", "--json")
    assert code == 0, err
    listed = {g["name"]: g for g in json.loads(out)}
    assert listed["rack1"]["expr"] == "name=rack1-*" and listed["picked"]["kind"] == "static"
    code, out, err = await cli(controller, "groups", "show", "rack1", "--json")
    assert [d["name"] for d in json.loads(out)["devices"]] == ["rack1-u1", "rack1-u4", "rack1-u7"]
    code, _, err = await cli(controller, "groups", "add", "bad", "name=(")
    assert code == 1 and "position" in err
    code, _, err = await cli(controller, "groups", "remove", "rack1")
    assert code == 0, err
    code, _, err = await cli(controller, "targets", "G@rack1")
    assert code == 1 and "no group 'rack1'" in err


async def test_ping_and_run_over_a_target_with_dry_run(
    controller: Controller, rack_fleet: SimFleet
) -> None:
    code, out, err = await cli(controller, "ping", "rack2-*", "--json")
    assert code == 0, err
    by_name = {d.runtime.info.name: d.runtime.info.uuid for d in rack_fleet.devices}
    assert set(json.loads(out)) == {by_name["rack2-u2"], by_name["rack2-u5"], by_name["rack2-u8"]}

    await add_offline_device(controller, OFFLINE)
    code, out, err = await cli(controller, "ping", "--all", "--dry-run", "--json")
    assert code == 0, err
    assert len(json.loads(out)["devices"]) == 9, "ping --all: the connected devices only"

    code, out, err = await cli(controller, "run", "rack2-*", "decom.qc", "--dry-run", "--json")
    assert code == 0, err
    assert [d["name"] for d in json.loads(out)["devices"]] == ["rack2-u2", "rack2-u5", "rack2-u8"]
    code, out, err = await cli(controller, "tasks", "--json")
    assert json.loads(out) == [], "a dry run does nothing"

    code, out, err = await cli(controller, "run", "rack2-*", "status", "--json")
    assert code == 0, err
    doc = json.loads(out)
    assert doc["summary"] == {
        "total": 3, "complete": 3, "running": 0, "error": 0, "lost": 0, "skipped": 0
    }  # fmt: skip
    assert all(r["result"]["st_id"] == 0 for r in doc["devices"].values())

    code, out, err = await cli(controller, "run", "rack2-u2", "status", "--json")
    assert code == 0, err
    assert json.loads(out)["result"]["st_id"] == 0, "one named device keeps its output"


async def test_batches_roll_and_stop_on_failure(
    controller: Controller, rack_fleet: SimFleet
) -> None:
    code, out, err = await cli(controller, "run", "rack0-*", "decom.qc", "--batch", "34%", "--json")
    assert code == 0, err
    doc = json.loads(out)
    assert doc["batch_size"] == 2
    assert sorted(r["batch"] for r in doc["devices"].values()) == [1, 1, 2]
    assert all(r["state"] == "complete" for r in doc["devices"].values())

    # QC that every device fails: the first batch fails, the rest are skipped.
    spec = 'spec={"nic_count": 99}'
    code, out, err = await cli(
        controller, "run", "rack0-*", "decom.qc", "--param", spec, "--batch", "1", "--json"
    )
    assert code == 2
    doc = json.loads(out)
    states = [r["state"] for r in sorted(doc["devices"].values(), key=lambda r: r["batch"])]
    assert states == ["error", "skipped", "skipped"]
    assert doc["summary"]["skipped"] == 2

    code, out, err = await cli(
        controller,
        *("run", "rack0-*", "decom.qc", "--param", spec, "--batch", "1"),
        *("--continue-on-error", "--json"),
    )
    assert code == 2
    assert [r["state"] for r in json.loads(out)["devices"].values()] == ["error"] * 3

    code, out, err = await cli(controller, "run", "rack0-*", "decom.qc", "--batch", "0")
    assert code == 1 and "--batch" in err


async def test_devices_table_fits_and_its_prefixes_are_targets(
    controller: Controller, rack_fleet: SimFleet
) -> None:
    code, out, err = await cli(controller, "devices", COLUMNS="200")
    assert code == 0, err
    lines = out.splitlines()
    assert max(map(len, lines)) <= 200 and "last seen" in out
    assert "ago" in out or "just now" in out
    by_name = {d.runtime.info.name: d.runtime.info.uuid for d in rack_fleet.devices}
    row = next(line for line in lines if "rack2-u5" in line)
    short = row.split("│")[1].strip()
    assert 4 <= len(short) < 36 and by_name["rack2-u5"].startswith(short)
    assert await names(controller, short) == ["rack2-u5"]

    code, out, err = await cli(controller, "devices", COLUMNS="50")
    assert code == 0, err
    assert max(map(len, out.splitlines())) <= 50
    assert "columns hidden: --wide" in out and "rack2-u5" in out and short in out

    code, out, err = await cli(controller, "devices", "--wide", COLUMNS="50")
    assert code == 0, err
    assert by_name["rack2-u5"] in out and "first seen" in out
    code, out, err = await cli(controller, "devices", "--columns", "name,full uuid")
    assert code == 0, err
    assert by_name["rack2-u5"] in out and "model" not in out
    code, _, err = await cli(controller, "devices", "--columns", "name,bogus")
    assert code == 1 and "no column bogus" in err


async def complete(controller: Controller, line: str) -> list[str]:
    """What bash's Tab offers after ``line`` (the last word is the one being completed)."""
    words = line.split(" ")
    code, out, err = await cli(
        controller,
        _HWFLEET_COMPLETE="complete_bash",
        COMP_WORDS=line,
        COMP_CWORD=str(len(words) - 1),
    )
    assert code == 0, err
    return out.split()


async def test_tab_completes_commands_targets_groups_and_methods(
    controller: Controller, rack_fleet: SimFleet
) -> None:
    assert await complete(controller, "hwfleet gro") == ["groups"]
    assert await complete(controller, "hwfleet run rack2-u") == ["rack2-u2", "rack2-u5", "rack2-u8"]
    assert await complete(controller, "hwfleet ping rack0-u0,rack1-u") == [
        "rack0-u0,rack1-u1",
        "rack0-u0,rack1-u4",
        "rack0-u0,rack1-u7",
    ]
    uuid = rack_fleet.devices[4].runtime.info.uuid
    offered = await complete(controller, f"hwfleet device show {uuid[:3]}")
    assert any(uuid.startswith(o) and len(o) >= 4 for o in offered)
    code, _, err = await cli(controller, "groups", "add", "rack1", "name=rack1-*")
    assert code == 0, err
    assert await complete(controller, "hwfleet targets G@r") == ["G@rack1"]
    assert await complete(controller, "hwfleet run rack1-u1 decom.") == [
        "decom.disk_erase",
        "decom.firmware_secure",
        "decom.qc",
    ]
