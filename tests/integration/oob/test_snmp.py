"""The SNMP driver against snmpsim on a loopback UDP port."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.oob_support.snmp_agent import SnmpAgent, snmp_agent

from hwfleet.oob.driver import BmcAddress, BmcError
from hwfleet.oob.service import OobService

NODE = "node-snmp"


@pytest.fixture
def agent(tmp_path: Path) -> Iterator[SnmpAgent]:
    with snmp_agent(tmp_path / "snmp") as running:
        yield running


def address(agent: SnmpAgent, community: str | None = None) -> BmcAddress:
    return BmcAddress(
        driver="snmp",
        address=agent.host,
        port=agent.port,
        password=agent.community if community is None else community,
    )


async def test_sensors_status_and_oids(oob: OobService, agent: SnmpAgent) -> None:
    await oob.set_bmc(NODE, address(agent))
    sensors = await oob.sensors(NODE)
    assert [(s["name"], s["kind"], s["value"]) for s in sensors] == [
        ("CPU Temp", "temperature", 44.0),
        ("Fan 1", "fan", 5200.0),
    ]
    assert await oob.power(NODE, "status") == "on"
    values = await oob.run(NODE, lambda d: d.get_oids(["1.3.6.1.2.1.1.1.0"]))  # type: ignore[attr-defined]
    assert values == {"1.3.6.1.2.1.1.1.0": "hwfleet test PDU"}
    with pytest.raises(BmcError, match="unsupported"):
        await oob.power(NODE, "off")


async def test_wrong_community_and_dead_agent_time_out(oob: OobService, agent: SnmpAgent) -> None:
    await oob.set_bmc(NODE, address(agent, "not-the-community"))
    with pytest.raises(BmcError) as err:
        await oob.sensors(NODE)
    assert err.value.kind == "timeout" and "not-the-community" not in str(err.value)
