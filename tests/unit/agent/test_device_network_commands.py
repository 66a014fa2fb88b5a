"""device.network.get|set and device.wifi.list through the registry of a real AgentRuntime.

Simulated devices record and report; a runtime without the simulated manager is
a "real" device, and only its refusals are exercised here (a missing or
non-existent interface), so nothing touches this machine's network.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tests.unit.agent.agent_kit import WIFI, Failed, call, sim_device, sim_runtime

from hwfleet.agent.hardware import HardwareDispatcher
from hwfleet.agent.identity import DeviceInfo
from hwfleet.agent.runtime import AgentRuntime
from hwfleet.sim.profiles import WifiNetwork

PSK = "wifi-key-never-shown"
STATIC = {
    "method": "static",
    "ipaddr": "172.16.4.9",
    "mask": "255.255.255.0",
    "route": "172.16.4.1",
}


async def test_simulated_set_then_get_round_trips_and_masks_the_key(tmp_path: Path) -> None:
    rt = sim_runtime(tmp_path)
    first_nic = rt.hardware.list_nics()[0].name
    before = await call(rt, "device.network.get")
    assert before == {"network": {"interface": first_nic, "method": "dhcp"}, "simulated": True}
    reply = await call(
        rt, "device.network.set", {**STATIC, "ns": ["172.16.4.1"], "ssid": "lab-5g", "psk": PSK}
    )
    assert reply["simulated"] is True and "applied" not in reply
    expected = {
        "interface": first_nic,
        "method": "static",
        "ipaddr": "172.16.4.9",
        "mask": 24,
        "netmask": "255.255.255.0",
        "route": "172.16.4.1",
        "ns": ["172.16.4.1"],
        "wifi_mode": "client",
        "ssid": "lab-5g",
        "security": "WPA2-PSK",
        "psk": "***",
    }
    assert reply["network"] == expected
    # Another process on the same data dir reports the same, and the key is nowhere on disk.
    assert (await call(sim_runtime(tmp_path), "device.network.get"))["network"] == expected
    assert PSK not in (tmp_path / "network.json").read_text()
    assert PSK not in json.dumps(reply)


async def test_simulated_per_interface_records(tmp_path: Path) -> None:
    device = sim_device()
    rt = sim_runtime(tmp_path, device)
    names = [nic.name for nic in device.interfaces]
    assert len(names) >= 2  # generate(1, seed=5) gives three
    await call(rt, "device.network.set", {**STATIC, "interface": names[1]})
    assert (await call(rt, "device.network.get"))["network"]["method"] == "dhcp"
    second = await call(rt, "device.network.get", {"interface": names[1]})
    assert second["network"]["ipaddr"] == "172.16.4.9"


async def test_wifi_only_change_keeps_the_recorded_addressing(tmp_path: Path) -> None:
    rt = sim_runtime(tmp_path)
    await call(rt, "device.network.set", STATIC)
    reply = await call(rt, "device.network.set", {"ssid": "guest", "security": "None"})
    assert reply["network"]["method"] == "static" and reply["network"]["ipaddr"] == "172.16.4.9"
    assert reply["network"]["ssid"] == "guest" and "psk" not in reply["network"]


async def test_simulated_set_rejects_garbage_and_keeps_the_record(tmp_path: Path) -> None:
    rt = sim_runtime(tmp_path)
    await call(rt, "device.network.set", STATIC)
    for params, field in (
        ({**STATIC, "ipaddr": "300.1.1.1"}, "ipaddr"),
        ({**STATIC, "mask": "255.255.0.255"}, "mask"),
        ({**STATIC, "ns": "1.1.1.1,nope"}, "ns"),
        ({"method": "dhcp", "ssid": "x", "security": "WPA2-PSK", "psk": "short"}, "psk"),
        ({**STATIC, "interface": "eth99"}, "interface"),
    ):
        with pytest.raises(Failed) as failed:
            await call(rt, "device.network.set", params)
        assert failed.value.code == "bad_params" and failed.value.msg.startswith(f"{field}: ")
        assert "short" not in failed.value.msg
    assert (await call(rt, "device.network.get"))["network"]["ipaddr"] == "172.16.4.9"


async def test_simulated_wifi_list_is_the_profile(tmp_path: Path) -> None:
    rt = sim_runtime(tmp_path)
    reply = await call(rt, "device.wifi.list")
    assert reply == {
        "wifi": [
            {"ssid": "lab-5g", "signal": 81, "security": "WPA2"},
            {"ssid": "guest", "signal": 40, "security": ""},
        ],
        "simulated": True,
    }
    assert len(WIFI) == 2
    empty = sim_runtime(tmp_path / "2", sim_device(wifi=[]))
    assert (await call(empty, "device.wifi.list"))["wifi"] == []
    one = sim_runtime(tmp_path / "3", sim_device(wifi=[WifiNetwork(ssid="solo")]))
    assert (await call(one, "device.wifi.list"))["wifi"] == [
        {"ssid": "solo", "signal": 0, "security": ""}
    ]


def real_runtime(tmp_path: Path) -> AgentRuntime:
    """A device whose hardware is not simulated: no manager at all, so nothing is read."""
    info = DeviceInfo(
        uuid="00000000-0000-4000-8000-000000000001", serial="R1", name="r", model_id="m"
    )
    return AgentRuntime(info, HardwareDispatcher([]), data_dir=tmp_path)


async def test_a_real_device_needs_an_explicit_existing_interface(tmp_path: Path) -> None:
    rt = real_runtime(tmp_path)
    with pytest.raises(Failed) as failed:
        await call(rt, "device.network.set", STATIC)
    assert failed.value.code == "bad_params" and failed.value.msg.startswith("interface: ")
    with pytest.raises(Failed) as failed:
        await call(rt, "device.network.set", {**STATIC, "interface": "hwfnope0"})
    assert "hwfnope0 does not exist" in failed.value.msg
    with pytest.raises(Failed) as failed:
        await call(rt, "device.network.get")
    assert failed.value.msg.startswith("interface: ")
    assert not (tmp_path / "network.json").exists()
