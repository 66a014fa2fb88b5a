"""The IPMI driver against OpenIPMI's ipmi_sim on a loopback UDP port."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.conftest import service_missing
from tests.oob_support.ipmi_sim import IpmiSim, have_ipmi_sim, ipmi_sim

from hwfleet.oob.driver import BmcAddress, BmcError
from hwfleet.oob.service import OobService

NODE = "node-ipmi"


@pytest.fixture
def sim(tmp_path: Path) -> Iterator[IpmiSim]:
    if not have_ipmi_sim():
        service_missing("ipmi_sim is not installed (Debian package openipmi)")
    with ipmi_sim(tmp_path / "ipmi") as running:
        yield running


def address(sim: IpmiSim, password: str | None = None) -> BmcAddress:
    return BmcAddress(
        driver="ipmi",
        address=sim.host,
        port=sim.port,
        username=sim.username,
        password=sim.password if password is None else password,
    )


async def test_power_and_sel(oob: OobService, sim: IpmiSim) -> None:
    await oob.set_bmc(NODE, address(sim))
    assert await oob.power(NODE, "on") == "on"
    assert await oob.power(NODE, "status") == "on"
    assert await oob.power(NODE, "off") == "off"
    sel = await oob.sel(NODE)
    assert len(sel) == 1 and sel[0]["id"] and sel[0]["severity"] == "warning"
    assert "CPU Temp" in sel[0]["message"]
    sensors = await oob.sensors(NODE)
    assert [(s["name"], s["kind"], s["value"]) for s in sensors] == [
        ("CPU Temp", "temperature", 41.0)
    ]


async def test_wrong_password(oob: OobService, sim: IpmiSim) -> None:
    wrong = "no-such-ipmi-pw"
    await oob.set_bmc(NODE, address(sim, wrong))
    with pytest.raises(BmcError) as err:
        await oob.power(NODE, "status")
    assert err.value.kind in ("auth", "timeout"), str(err.value)
    assert wrong not in str(err.value) and sim.password not in str(err.value)


async def test_stopped_bmc_times_out(oob: OobService, sim: IpmiSim) -> None:
    await oob.set_bmc(NODE, address(sim))
    sim.stop()
    with pytest.raises(BmcError) as err:
        await oob.power(NODE, "status")
    assert err.value.kind in ("timeout", "unreachable"), str(err.value)
