"""``hwfleet power|sel|sensors|bmc`` take targets: names, globs, groups, ``--dry-run``;
a real controller and sushy-tools' Redfish emulator, the CLI in a subprocess."""

from __future__ import annotations

import json
import uuid

from tests.integration.controller.conftest import add_offline_device
from tests.integration.oob.test_controller_oob import NODE, cli, ctl, set_bmc
from tests.oob_support.emulators import Redfish

from hwfleet.controller.app import Controller

__all__ = ["ctl"]  # the fixture, used by name
SPARE = str(uuid.UUID(int=9))


async def test_power_sel_sensors_over_targets(ctl: Controller, redfish: Redfish) -> None:
    # Named device records; the nodes' agents need not be connected for their BMCs.
    await add_offline_device(ctl, NODE, 501, "bmc-u1")
    await add_offline_device(ctl, SPARE, 502, "bmc-u2")
    await set_bmc(ctl, redfish)

    code, out, err = await cli(ctl, "power", "off", "bmc-*", "--dry-run", "--json")
    assert code == 0, err
    assert [d["name"] for d in json.loads(out)["devices"]] == ["bmc-u1", "bmc-u2"]
    code, out, err = await cli(ctl, "power", "on", "bmc-u1", "--json")
    assert code == 0 and json.loads(out) == {NODE: {"power": "on"}}, err

    # Two selected, one with a BMC: that one answers, the other says why; exit 1.
    code, out, _ = await cli(ctl, "power", "off", "bmc-*", "--json")
    doc = json.loads(out)
    assert code == 1 and doc[NODE] == {"power": "off"} and "has no BMC" in doc[SPARE]["error"]
    code, out, err = await cli(ctl, "power", "status", "name=bmc-u1 or serial=501", "--json")
    assert code == 0 and json.loads(out) == {NODE: {"power": "off"}}, err

    redfish.control("sel", {"Message": "Fan 2 failed", "Severity": "Critical"})
    code, out, err = await cli(ctl, "sel", "bmc-u1", "--json")
    assert code == 0 and [e["message"] for e in json.loads(out)] == ["Fan 2 failed"], err
    code, out, err = await cli(ctl, "sensors", "serial=501", "--json")
    assert code == 0 and {s["name"] for s in json.loads(out)} >= {"CPU Temp"}, err
    code, _, err = await cli(ctl, "sel", "bmc-*")
    assert code == 1 and "selects 2 devices" in err and "acts on one" in err
    code, out, err = await cli(ctl, "bmc", "show", "bmc-u1", "--json")
    assert code == 0 and json.loads(out)["driver"] == "redfish", err
