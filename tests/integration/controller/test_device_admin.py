"""Seed 004 device management end to end: REST (and the CLI) → controller → TLS → simulated agent.

A real controller (SQLite, memory bus, TLS gateway, REST API on loopback) and
two enrolled simulated devices with their own data dirs; every request goes
over real sockets and every answer comes back from the agent's handler.
"""

from __future__ import annotations

import json
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from tests.conftest import wait_for
from tests.integration.controller.conftest import add_offline_device, cli, connected_fleet

from hwfleet.controller.app import Controller
from hwfleet.sim.fleet import SimFleet
from hwfleet.sim.profiles import WifiNetwork, generate

PSK = "psk-that-must-never-leak"
OTHER = "SHA256:" + ":".join(["5a"] * 32)
HWFLEET = [sys.executable, "-m", "hwfleet.cli"]


@pytest.fixture
async def devices(
    controller: Controller, deadline: float, tmp_path: Path
) -> AsyncIterator[SimFleet]:
    profile = generate(2, seed=21)
    profile.devices[0].wifi = [
        WifiNetwork(ssid="floor-2", signal=72, security="WPA2"),
        WifiNetwork(ssid="visitors", signal=35),
    ]
    async with connected_fleet(controller, profile, 21, tmp_path, deadline) as sim:
        yield sim


@pytest.fixture
async def api(controller: Controller) -> AsyncIterator[httpx.AsyncClient]:
    headers = {"Authorization": f"Bearer {controller.operator_token}"}
    async with httpx.AsyncClient(base_url=controller.api_url, headers=headers, timeout=30) as http:
        yield http


def url(fleet: SimFleet, tail: str, index: int = 0) -> str:
    return f"/api/v1/devices/{fleet.devices[index].runtime.info.uuid}/{tail}"


async def events(controller: Controller, prefix: str) -> list[dict[str, Any]]:
    async with controller.store.tx() as tx:
        rows = await tx.events.list(limit=1000)
    return [e.payload for e in rows if e.routing_key.startswith(prefix)]


async def test_rename_updates_agent_store_and_events(
    controller: Controller, devices: SimFleet, api: httpx.AsyncClient, tmp_path: Path
) -> None:
    device = devices.devices[0]
    uuid, old = device.runtime.info.uuid, device.runtime.info.name
    reply = await api.post(url(devices, "rename"), json={"name": "line-3 / bay 12"})
    assert reply.status_code == 200, reply.text
    assert reply.json() == {"uuid": uuid, "name": "line-3 / bay 12", "old_name": old}
    assert device.runtime.info.name == "line-3 / bay 12"
    listed = (await api.get(f"/api/v1/devices/{uuid}")).json()
    assert listed["name"] == "line-3 / bay 12"
    assert await events(controller, f"device.renamed.{uuid}") == [
        {"uuid": uuid, "name": "line-3 / bay 12", "old_name": old}
    ]
    # Kept beside the device's keys, so the next start (and handshake) uses it.
    assert device.runtime.local.data_dir == tmp_path / "sim" / uuid
    saved = json.loads((tmp_path / "sim" / uuid / "device.json").read_text())
    assert saved == {"name": "line-3 / bay 12"}
    bad = await api.post(url(devices, "rename"), json={"name": ""})
    assert bad.status_code == 422


async def test_the_new_name_comes_back_in_the_next_handshake(
    controller: Controller, devices: SimFleet, api: httpx.AsyncClient, deadline: float
) -> None:
    """Renamed through the raw ``run`` route (no store update): the reconnect carries it."""
    device = devices.devices[1]
    uuid = device.runtime.info.uuid
    run = await api.post(
        f"/api/v1/devices/{uuid}/run",
        json={"method": "device.rename", "params": {"new_name": "from-handshake"}},
    )
    assert run.status_code == 200, run.text
    before = sum(1 for _ in await events(controller, f"device.online.{uuid}"))
    assert controller.devices.drop(uuid, "test: reconnect")

    async def back_online() -> bool:
        return len(await events(controller, f"device.online.{uuid}")) > before

    await wait_for(back_online, deadline)
    assert (await events(controller, f"device.online.{uuid}"))[-1]["name"] == "from-handshake"
    assert (await api.get(f"/api/v1/devices/{uuid}")).json()["name"] == "from-handshake"


async def test_network_set_and_get_on_a_simulated_device(
    controller: Controller, devices: SimFleet, api: httpx.AsyncClient
) -> None:
    body = {
        "method": "static",
        "ipaddr": "10.44.0.17",
        "mask": "255.255.255.0",
        "route": "10.44.0.1",
        "ns": ["10.44.0.1", "9.9.9.9"],
        "ssid": "floor-2",
        "security": "WPA2-PSK",
        "psk": PSK,
    }
    reply = await api.put(url(devices, "network"), json=body)
    assert reply.status_code == 200, reply.text
    assert PSK not in reply.text
    network = reply.json()["network"]
    assert reply.json()["simulated"] is True
    assert network["psk"] == "***" and network["mask"] == 24 and network["ns"] == body["ns"]
    got = await api.get(url(devices, "network"))
    assert got.json()["network"] == network
    # The other device was not touched.
    assert (await api.get(url(devices, "network", 1))).json()["network"]["method"] == "dhcp"
    changed = await events(controller, "device.network_changed.")
    assert len(changed) == 1 and changed[0]["network"]["ipaddr"] == "10.44.0.17"
    assert PSK not in json.dumps(changed)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"method": "static", "ipaddr": "10.1.1.300", "mask": 24, "route": "10.1.1.1"}, "ipaddr"),
        (
            {"method": "static", "ipaddr": "10.1.1.3", "mask": "255.0.255.0", "route": "10.1.1.1"},
            "mask",
        ),
        ({"method": "static", "ipaddr": "10.1.1.3", "mask": 24, "route": "10.2.1.1"}, "route"),
        ({"method": "dhcp", "ns": ["1.1.1.1"]}, "ns"),
        ({"method": "dhcp", "ssid": "x", "security": "WPA2-PSK", "psk": "tiny"}, "psk"),
        ({"method": "dhcp", "ssid": "x", "wifi_mode": "adhoc"}, "wifi_mode"),
    ],
)
async def test_network_garbage_is_422_naming_the_field(
    controller: Controller,
    devices: SimFleet,
    api: httpx.AsyncClient,
    body: dict[str, Any],
    field: str,
) -> None:
    reply = await api.put(url(devices, "network"), json=body)
    assert reply.status_code == 422
    assert reply.json()["detail"].startswith(f"device.network.set: {field}: ")
    assert "tiny" not in reply.text
    assert await events(controller, "device.network_changed.") == []


async def test_network_body_must_be_an_object(devices: SimFleet, api: httpx.AsyncClient) -> None:
    reply = await api.put(url(devices, "network"), content=b'"' + PSK.encode() + b'"')
    assert reply.status_code == 422 and PSK not in reply.text


async def test_wifi_list_is_the_profile(devices: SimFleet, api: httpx.AsyncClient) -> None:
    reply = await api.get(url(devices, "wifi"))
    assert reply.status_code == 200
    assert reply.json()["wifi"] == [
        {"ssid": "floor-2", "signal": 72, "security": "WPA2"},
        {"ssid": "visitors", "signal": 35, "security": ""},
    ]
    assert (await api.get(url(devices, "wifi", 1))).json()["wifi"] == []


async def test_trust_add_list_remove_and_no_lockout(
    controller: Controller, devices: SimFleet, api: httpx.AsyncClient
) -> None:
    ours = controller.admission.ca.fingerprint()
    listed = (await api.get(url(devices, "trust"))).json()
    assert listed["current"] == ours
    assert [(e["access_id"], e["current"]) for e in listed["trust"]] == [(ours, True)]

    added = await api.post(url(devices, "trust"), json={"fingerprint": OTHER, "label": "standby"})
    assert added.status_code == 200 and added.json()["added"] is True
    ids = [e["access_id"] for e in (await api.get(url(devices, "trust"))).json()["trust"]]
    assert ids == [ours, OTHER]

    refused = await api.delete(url(devices, f"trust/{quote(ours, safe='')}"))
    assert refused.status_code == 409 and "lock" in refused.json()["detail"]
    removed = await api.delete(url(devices, f"trust/{quote(OTHER, safe='')}"))
    assert removed.status_code == 200 and removed.json()["access_id"] == OTHER
    missing = await api.delete(url(devices, f"trust/{quote(OTHER, safe='')}"))
    assert missing.status_code == 404
    garbage = await api.post(url(devices, "trust"), json={"fingerprint": "SHA256:zz"})
    assert garbage.status_code == 422 and "fingerprint" in garbage.json()["detail"]
    ids = [e["access_id"] for e in (await api.get(url(devices, "trust"))).json()["trust"]]
    assert ids == [ours]
    assert [e["access_id"] for e in await events(controller, "device.trust_added.")] == [OTHER]
    assert [e["access_id"] for e in await events(controller, "device.trust_removed.")] == [OTHER]


async def test_password_change_refuses_a_wrong_old_password(
    controller: Controller, devices: SimFleet, api: httpx.AsyncClient
) -> None:
    first = await api.post(
        url(devices, "password"), json={"old_password": "", "new_password": "first-pass-1"}
    )
    assert first.status_code == 200, first.text
    wrong = await api.post(
        url(devices, "password"),
        json={"old_password": "not-it", "new_password": "second-pass-2"},
    )
    assert wrong.status_code == 403 and "old_password is wrong" in wrong.json()["detail"]
    assert "second-pass-2" not in wrong.text and "not-it" not in wrong.text
    ok = await api.post(
        url(devices, "password"),
        json={"old_password": "first-pass-1", "new_password": "second-pass-2", "reset_acl": False},
    )
    assert ok.status_code == 200 and ok.json()["reset_acl"] is False
    changed = await events(controller, "device.password_changed.")
    assert len(changed) == 2
    assert "pass-" not in json.dumps(changed)


async def test_offline_device_and_missing_token(
    devices: SimFleet, api: httpx.AsyncClient, controller: Controller
) -> None:
    unknown = await api.get("/api/v1/devices/00000000-0000-4000-8000-00000000dead/trust")
    assert unknown.status_code == 404 and "no such device" in unknown.json()["detail"]
    offline = "00000000-0000-4000-8000-0000000000ff"
    await add_offline_device(controller, offline)
    gone = await api.get(f"/api/v1/devices/{offline}/trust")
    assert gone.status_code == 409 and "not connected" in gone.json()["detail"]
    async with httpx.AsyncClient(base_url=controller.api_url) as anonymous:
        assert (await anonymous.get(url(devices, "trust"))).status_code == 401


async def test_cli_maintenance_on_and_off(controller: Controller, devices: SimFleet) -> None:
    uuid = devices.devices[0].runtime.info.uuid
    code, out, err = await cli(controller, "device", "maintenance", "on", uuid, "--json")
    assert code == 0, err
    assert json.loads(out) == {"maintenance": True, "st_id": -1}
    assert devices.devices[0].runtime.st_id() == -1
    assert devices.devices[1].runtime.st_id() == 0, "only the named device"
    code, out, err = await cli(controller, "device", "maintenance", "off", uuid)
    assert code == 0, err
    assert f"device {uuid}: maintenance off (st_id 0)" in out
    code, out, err = await cli(controller, "device", "maintenance", "maybe", uuid)
    assert code != 0 and "'maybe' is not on or off" in err


async def test_cli_device_commands(controller: Controller, devices: SimFleet) -> None:
    uuid = devices.devices[0].runtime.info.uuid
    code, out, err = await cli(controller, "device", "rename", uuid, "via-cli", "--json")
    assert code == 0, err
    assert json.loads(out)["name"] == "via-cli"

    code, out, err = await cli(
        controller,
        *("device", "network", uuid, "--static", "--ipaddr", "10.9.0.4", "--mask", "16"),
        *("--route", "10.9.0.1", "--ns", "1.1.1.1,9.9.9.9", "--ssid", "floor-2", "--json"),
        HWFLEET_WIFI_PSK=PSK,
    )
    assert code == 0, err
    assert PSK not in out + err
    network = json.loads(out)["network"]
    assert network["netmask"] == "255.255.0.0" and network["ns"] == ["1.1.1.1", "9.9.9.9"]
    assert network["psk"] == "***"
    code, out, err = await cli(
        controller, "device", "network", uuid, "--json", HWFLEET_WIFI_PSK=PSK
    )
    assert code == 0, err
    assert json.loads(out)["network"] == network  # a PSK in the env does not turn a show into a set

    code, out, err = await cli(
        controller,
        *("device", "passwd", uuid, "--json"),
        HWFLEET_DEVICE_OLD_PASSWORD="",
        HWFLEET_DEVICE_NEW_PASSWORD="cli-pass-123",
    )
    assert code == 0, err
    assert json.loads(out)["changed"] is True
    code, out, err = await cli(
        controller,
        *("device", "passwd", uuid, "--old", "wrong-one", "--json"),
        HWFLEET_DEVICE_NEW_PASSWORD="cli-pass-456",
    )
    assert code == 1 and out == ""
    assert "old_password is wrong" in err and "cli-pass-456" not in err and "wrong-one" not in err

    code, out, err = await cli(controller, "device", "trust", uuid, "list", "--json")
    assert code == 0, err
    assert json.loads(out)["current"] == controller.admission.ca.fingerprint()
    code, out, err = await cli(controller, "device", "wifi", uuid, "--json")
    assert code == 0, err
    assert [w["ssid"] for w in json.loads(out)["wifi"]] == ["floor-2", "visitors"]
