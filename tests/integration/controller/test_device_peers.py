"""Seed 004 on a real device: a second controller admitted by the device password, then by its
key alone, then cut off the moment the enrolled controller removes its key.

A real controller (TLS gateway, REST API) with one enrolled simulated device that
also serves its admin listener on loopback; the second controller is a client with
its own Ed25519 key, speaking to the device over real TLS.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519
from tests.integration.controller.conftest import connected_fleet
from tests.integration.controller.test_device_admin import cli

from hwfleet.agent.access.admin_listener import AdminListener
from hwfleet.controller.app import Controller
from hwfleet.protocol.errors import RemoteError, SessionClosedError
from hwfleet.sim.fleet import SimFleet
from hwfleet.sim.profiles import generate
from hwfleet.trust.device_client import DeviceConnection, connect_device

DEVICE_PASSWORD = "device-admin-password-41"


@pytest.fixture
async def device(
    controller: Controller, deadline: float, tmp_path: Path
) -> AsyncIterator[tuple[SimFleet, AdminListener]]:
    async with connected_fleet(controller, generate(1, seed=31), 31, tmp_path, deadline) as sim:
        one = sim.devices[0]
        assert one.identity is not None
        listener = AdminListener(one.runtime, one.identity, host="127.0.0.1", port=0)
        await listener.start()
        try:
            yield sim, listener
        finally:
            await listener.close()


@pytest.fixture
async def api(controller: Controller) -> AsyncIterator[httpx.AsyncClient]:
    headers = {"Authorization": f"Bearer {controller.operator_token}"}
    async with httpx.AsyncClient(base_url=controller.api_url, headers=headers, timeout=30) as http:
        yield http


async def second_controller(
    listener: AdminListener, key: ed25519.Ed25519PrivateKey, password: str = ""
) -> DeviceConnection:
    return await connect_device(
        "127.0.0.1",
        listener.port,
        key=key,
        device_fingerprint=listener.device_fingerprint,
        password=password,
        label="standby controller",
    )


async def test_password_then_key_then_removed(
    controller: Controller,
    device: tuple[SimFleet, AdminListener],
    api: httpx.AsyncClient,
    deadline: float,
) -> None:
    sim, listener = device
    uuid = sim.devices[0].runtime.info.uuid
    base = f"/api/v1/devices/{uuid}"
    set_pw = await api.post(f"{base}/password", json={"new_password": DEVICE_PASSWORD})
    assert set_pw.status_code == 200, set_pw.text
    key = ed25519.Ed25519PrivateKey.generate()

    # An unknown key alone, or with a wrong password, is refused.
    with pytest.raises(RemoteError) as unknown:
        await second_controller(listener, key)
    assert unknown.value.code == "unauthorized" and "trust list" in unknown.value.msg
    with pytest.raises(RemoteError) as wrong:
        await second_controller(listener, key, "not-the-password")
    assert wrong.value.code == "unauthorized"

    # First contact: the device password admits the key and adds it to the trust list.
    first = await second_controller(listener, key, DEVICE_PASSWORD)
    assert (first.admitted_by, first.uuid) == ("password", uuid)
    listed = await first.call("device.trust.list")
    assert listed["current"] == first.access_id
    assert first.access_id in [entry["access_id"] for entry in listed["trust"]]
    assert (await first.call("status"))["name"] == sim.devices[0].runtime.info.name
    await first.close()

    # From now on the key alone is enough, and the enrolled controller sees the new entry.
    second = await second_controller(listener, key)
    assert second.admitted_by == "key" and second.access_id == first.access_id
    renamed = await second.call("device.rename", {"new_name": "renamed by the standby"})
    assert renamed["name"] == "renamed by the standby"
    on_primary = (await api.get(f"{base}/trust")).json()["trust"]
    assert {e["access_id"]: e["label"] for e in on_primary}[second.access_id] == (
        "standby controller"
    )
    # It cannot lock itself out, nor remove the controller the device enrolled with.
    with pytest.raises(RemoteError) as own:
        await second.call("device.trust.remove", {"access_id": second.access_id})
    assert own.value.code == "refused"
    with pytest.raises(RemoteError) as enrolled:
        ca = controller.admission.ca.fingerprint()
        await second.call("device.trust.remove", {"access_id": ca})
    assert enrolled.value.code == "refused" and "enrolled" in enrolled.value.msg

    # The enrolled controller removes the key: the live session ends at once.
    removed = await api.delete(f"{base}/trust/{quote(second.access_id, safe='')}")
    assert removed.status_code == 200 and removed.json()["sessions_closed"] == 1
    async with asyncio.timeout(deadline):
        await second.wait_closed()
    assert second.closed
    with pytest.raises(SessionClosedError):
        await second.call("status")
    with pytest.raises(RemoteError) as gone:
        await second_controller(listener, key)
    assert gone.value.code == "unauthorized"


async def test_cli_reaches_the_device_directly(
    controller: Controller,
    device: tuple[SimFleet, AdminListener],
    api: httpx.AsyncClient,
    tmp_path: Path,
) -> None:
    sim, listener = device
    base = f"/api/v1/devices/{sim.devices[0].runtime.info.uuid}"
    assert (await api.post(f"{base}/password", json={"new_password": DEVICE_PASSWORD})).is_success
    standby = str(tmp_path / "standby")
    direct = (
        "device",
        "direct",
        f"127.0.0.1:{listener.port}",
        "device.trust.list",
        "--fingerprint",
        listener.device_fingerprint,
        "--json",
    )

    code, out, err = await cli(controller, *direct, "--data-dir", standby)
    assert code != 0 and "HWFLEET_DEVICE_PASSWORD" in err  # an untrusted key, no password

    code, out, err = await cli(
        controller, *direct, "--data-dir", standby, HWFLEET_DEVICE_PASSWORD=DEVICE_PASSWORD
    )
    assert code == 0, err
    first = json.loads(out)
    assert DEVICE_PASSWORD not in out + err
    assert oct((Path(standby) / "pki" / "client.key").stat().st_mode & 0o777) == "0o600"

    code, out, err = await cli(controller, *direct, "--data-dir", standby)  # the key alone now
    assert code == 0, err
    assert json.loads(out)["current"] == first["current"]

    code, out, err = await cli(
        controller, *direct[:-3], "--fingerprint", "SHA256:" + "ab" * 32, "--data-dir", standby
    )
    assert code != 0 and "not the expected" in err
