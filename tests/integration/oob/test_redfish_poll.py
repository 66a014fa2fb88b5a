"""The asyncio Redfish poll path against sushy-tools' emulator: same data as sushy, clean errors."""

from __future__ import annotations

import logging

import pytest
from tests.integration.oob.test_redfish import NODE, address
from tests.oob_support.emulators import Redfish

from hwfleet.oob.driver import BmcError
from hwfleet.oob.service import OobService


async def test_poll_data_matches_the_sushy_driver(oob: OobService, redfish: Redfish) -> None:
    a = address(redfish)
    await oob.set_bmc(NODE, a)
    redfish.control("sel", {"Message": "Fan 2 failed", "Severity": "Critical"})
    for kind in ("chassis", "sdr", "sel"):
        fast = await oob.redfish_poll(a, kind)
        rich = await oob.run_at(a, lambda d, k=kind: d.poll(k))  # type: ignore[misc]
        assert fast == rich, kind
    sensors = await oob.redfish_poll(a, "sdr")
    assert any(s["name"] == "CPU Temp" and s["value"] == 41.0 for s in sensors)
    assert [e["message"] for e in await oob.redfish_poll(a, "sel")] == ["Fan 2 failed"]
    # The discovered paths are kept: a second round reads the same and stays correct.
    await oob.power(NODE, "off")
    assert (await oob.redfish_poll(a, "chassis"))["power"] == "off"


async def test_poll_errors_are_clean(
    oob: OobService, redfish: Redfish, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    wrong = "WrongPassw0rd-xyz"
    with pytest.raises(BmcError) as err:
        await oob.redfish_poll(address(redfish, wrong), "chassis")
    assert err.value.kind == "auth"
    assert wrong not in str(err.value) + caplog.text
    with pytest.raises(BmcError, match="no 'bogus' poller"):
        await oob.redfish_poll(address(redfish), "bogus")
    redfish.control("garbage", {})
    with pytest.raises(BmcError) as err:
        await oob.redfish_poll(address(redfish), "sdr")
    assert err.value.kind == "protocol", str(err.value)
    redfish.stop()
    with pytest.raises(BmcError) as err:
        await oob.redfish_poll(address(redfish), "chassis")
    assert err.value.kind in ("unreachable", "timeout")
    assert redfish.password not in str(err.value) + caplog.text
