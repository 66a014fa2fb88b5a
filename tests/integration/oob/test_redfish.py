"""The Redfish driver against sushy-tools' emulator: power, sensors, SEL, errors."""

from __future__ import annotations

import logging

import pytest
from tests.oob_support.emulators import Redfish

from hwfleet.oob.driver import BmcAddress, BmcError
from hwfleet.oob.service import OobService

NODE = "node-1"


def address(emu: Redfish, password: str | None = None) -> BmcAddress:
    return BmcAddress(
        driver="redfish",
        address=emu.url,
        username=emu.username,
        password=emu.password if password is None else password,
    )


async def test_power_cycle_and_status(oob: OobService, redfish: Redfish) -> None:
    await oob.set_bmc(NODE, address(redfish))
    assert await oob.power(NODE, "on") == "on"
    assert await oob.power(NODE, "off") == "off"
    assert await oob.power(NODE, "status") == "off"
    assert await oob.power(NODE, "cycle") == "on"


async def test_sensors_and_sel(oob: OobService, redfish: Redfish) -> None:
    await oob.set_bmc(NODE, address(redfish))
    redfish.control("sel", {"Message": "Fan 2 failed", "Severity": "Critical"})
    sensors = await oob.sensors(NODE)
    cpu = next(s for s in sensors if s["name"] == "CPU Temp")
    assert (cpu["kind"], cpu["value"], cpu["upper_critical"]) == ("temperature", 41.0, 90.0)
    assert any(s["kind"] == "fan" and s["value"] == 4200 for s in sensors)
    sel = await oob.sel(NODE)
    assert [(e["message"], e["severity"]) for e in sel] == [("Fan 2 failed", "critical")]


async def test_wrong_password_is_an_auth_error_without_the_password(
    oob: OobService, redfish: Redfish, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    wrong = "WrongPassw0rd-xyz"
    await oob.set_bmc(NODE, address(redfish, wrong))
    with pytest.raises(BmcError) as err:
        await oob.power(NODE, "status")
    assert err.value.kind == "auth"
    described = await oob.describe(NODE)
    assert described["last_error"] and "auth" in described["last_error"]
    text = str(err.value) + repr(described) + caplog.text
    assert wrong not in text and redfish.password not in text


async def test_unreachable_and_garbage(oob: OobService, redfish: Redfish) -> None:
    await oob.set_bmc(NODE, address(redfish))
    redfish.control("garbage", {})
    with pytest.raises(BmcError) as err:
        await oob.power(NODE, "status")
    assert err.value.kind == "protocol", str(err.value)
    redfish.stop()
    with pytest.raises(BmcError) as err:
        await oob.sel(NODE)
    assert err.value.kind in ("unreachable", "timeout")
    assert redfish.password not in str(err.value)


async def test_credentials_are_encrypted_at_rest(oob: OobService, redfish: Redfish) -> None:
    await oob.set_bmc(NODE, address(redfish))
    raw = oob.store.url if hasattr(oob.store, "url") else ""  # noqa: F841
    from hwfleet.store.bmcs import BmcRepository

    async with oob.store.tx(readonly=True) as tx:
        record = await BmcRepository(tx.conn).get(NODE)
    assert record is not None
    assert redfish.password.encode() not in record.sealed
    assert b"admin" not in record.sealed
    described = await oob.describe(NODE)
    assert "password" not in described and "username" not in described


async def test_a_url_with_credentials_is_refused(oob: OobService) -> None:
    with pytest.raises(BmcError, match="not in the URL"):
        await oob.set_bmc(NODE, BmcAddress(driver="redfish", address="http://u:p@127.0.0.1:1"))
