"""Device lifecycle from the command line: the record keeps its latest inventory, and
``device remove`` retires a device (keys revoked, session dropped, rows deleted)."""

from __future__ import annotations

import asyncio
import json

from hwfleet.controller.app import Controller
from hwfleet.sim.fleet import SimFleet

from .conftest import cli


async def test_device_show_prints_the_latest_inventory(
    controller: Controller, fleet: SimFleet
) -> None:
    info = fleet.devices[0].runtime.info
    code, out, err = await cli(controller, "device", "show", info.name, "--json")
    assert code == 0, err
    assert json.loads(out)["inventory"] is None
    code, out, err = await cli(controller, "run", info.name, "inventory", "--json")
    assert code == 0, err
    reported = json.loads(out)["result"]
    code, out, err = await cli(controller, "device", "show", info.uuid[:8], "--json")
    assert code == 0, err
    shown = json.loads(out)
    assert shown["uuid"] == info.uuid and shown["inventory"] == reported
    code, out, err = await cli(controller, "device", "show", info.uuid[:8])
    assert code == 0, err
    assert "inventory:" in out and info.uuid in out


async def test_device_remove_revokes_drops_and_deletes(
    controller: Controller, fleet: SimFleet, deadline: float
) -> None:
    gone = fleet.devices[1].runtime.info
    code, _, err = await cli(controller, "device", "remove", gone.name)
    assert code == 1 and "needs confirmation" in err and "--yes" in err
    code, out, err = await cli(controller, "device", "remove", gone.name, "--dry-run", "--json")
    assert code == 0 and [d["uuid"] for d in json.loads(out)["devices"]] == [gone.uuid]

    code, out, err = await cli(controller, "device", "remove", gone.name, "--yes", "--json")
    assert code == 0, err
    (removed,) = json.loads(out)["removed"]
    assert removed["uuid"] == gone.uuid and removed["removed"] is True
    assert len(removed["keys_revoked"]) == 1
    assert controller.devices.get(gone.uuid) is None, "its session was dropped"

    code, out, err = await cli(controller, "devices", "--json")
    assert gone.uuid not in {d["uuid"] for d in json.loads(out)}
    code, out, err = await cli(controller, "keys", "list", "--json")
    states = {k["device_uuid"]: k["state"] for k in json.loads(out)}
    assert states[gone.uuid] == "rejected"
    # It keeps trying to come back; its rejected key keeps it out.
    others = [d.runtime.info.uuid for d in fleet.devices if d.runtime.info.uuid != gone.uuid]
    code, out, err = await cli(controller, "ping", *others[:2], "--json")
    assert code == 0, err
    async with asyncio.timeout(deadline):
        async with controller.store.tx() as tx:
            assert await tx.devices.get(gone.uuid) is None
    code, _, err = await cli(controller, "device", "show", gone.uuid[:8])
    assert code == 1 and "no device has" in err
