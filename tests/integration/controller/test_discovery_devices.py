"""The controller's discovery: unenrolled devices listed as such, spoofs raised as events."""

from __future__ import annotations

import socket
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from tests.conftest import wait_for
from tests.integration.discovery.cli_runner import Claimant, discover_spoofer_first

from hwfleet.agent.discovery import load_signing_key, metadata_for
from hwfleet.controller.app import Controller
from hwfleet.discovery import DeviceMetadata, DiscoveryResponder
from hwfleet.settings import ServerSettings
from hwfleet.sim.fleet import SimFleet
from hwfleet.sim.profiles import generate

PASSWORD = "correct horse battery staple"


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def stranger(address: str, device_uuid: str, name: str) -> DeviceMetadata:
    return DeviceMetadata(
        uuid=device_uuid,
        name=name,
        serial=99001,
        model_id="unknown-box",
        version="0.9",
        ipaddr=address,
        endpoint=(address, 7900),
    )


@pytest.fixture
async def site(tmp_path: Path) -> AsyncIterator[tuple[Controller, SimFleet, int]]:
    """A controller, 3 enrolled simulated devices answering discovery on 127.1.3.x."""
    port = free_udp_port()
    ctl = Controller(
        ServerSettings(
            data_dir=str(tmp_path / "controller"),
            agent_listen="127.0.0.1:0",
            api_listen="127.0.0.1:0",
            enroll_password=PASSWORD,
            discovery_port=port,
        )
    )
    await ctl.start()
    host, gateway_port = ctl.gateway.address
    fleet = SimFleet(
        generate(3, seed=5),
        host,
        gateway_port,
        seed=5,
        data_dir=str(tmp_path / "sim"),
        enroll_password=PASSWORD,
        address_base="127.1.3.1",
        discovery_port=port,
    )
    await fleet.start()
    try:
        assert await fleet.wait_connected(30) == 3
        yield ctl, fleet, port
    finally:
        await fleet.close()
        await ctl.close()


async def test_unenrolled_devices_are_listed_as_discovered_and_spoofs_raise_events(
    site: tuple[Controller, SimFleet, int],
) -> None:
    ctl, fleet, port = site
    enrolled = [d.runtime.info.uuid for d in fleet.devices]
    newcomer = str(uuid.uuid4())
    responders = [
        # Never enrolled, unsigned: the controller must list it, but as "discovered".
        DiscoveryResponder(
            lambda: stranger("127.1.3.200", newcomer, "bench-7"),
            bind="127.1.3.200",
            port=port,
            group=None,
        ),
        # Claims an enrolled device's uuid but signs with another key: a spoof.
        DiscoveryResponder(
            lambda: stranger("127.1.3.201", enrolled[0], "impostor"),
            bind="127.1.3.201",
            port=port,
            group=None,
            signing_key=Ed25519PrivateKey.generate(),
        ),
    ]
    for responder in responders:
        await responder.start()
    headers = {"Authorization": f"Bearer {ctl.operator_token}"}
    try:
        async with httpx.AsyncClient(base_url=ctl.api_url, headers=headers, timeout=30) as http:
            scan = await http.post(
                "/api/v1/discovery/scan", json={"timeout": 2, "probe": ["127.1.3.0/24"]}
            )
            assert scan.status_code == 200, scan.text

            devices: list[dict[str, Any]] = []

            async def listed() -> bool:
                devices[:] = (await http.get("/api/v1/devices")).json()
                return len(devices) == 4

            await wait_for(listed, timeout=10)
            by_uuid = {d["uuid"]: d for d in devices}
            for device_uuid in enrolled:
                assert by_uuid[device_uuid]["state"] == "online"
                assert by_uuid[device_uuid]["enrolled"] is True
            assert by_uuid[newcomer]["state"] == "discovered"
            assert by_uuid[newcomer]["enrolled"] is False
            assert by_uuid[newcomer]["name"] == "bench-7"
            assert by_uuid[newcomer]["ipaddr"] == "127.1.3.200"

            only_enrolled = (await http.get("/api/v1/devices?discovered=false")).json()
            assert {d["uuid"] for d in only_enrolled} == set(enrolled)

            discovered = {d["uuid"]: d for d in (await http.get("/api/v1/discovery")).json()}
            assert discovered[enrolled[0]]["spoofed"] is True
            assert discovered[enrolled[0]]["spoof_source"] == "127.1.3.201"
            # The impostor did not overwrite what the enrolled device announced.
            assert discovered[enrolled[0]]["name"] != "impostor"
            assert discovered[enrolled[0]]["ipaddr"] == "127.1.3.1"
            # A serial keeps its JSON type in discovery too (the profile's 1001 is not "1001").
            serial = fleet.devices[1].runtime.info.serial
            assert isinstance(serial, int)
            assert discovered[enrolled[1]]["serial"] == serial

        events: list[Any] = []

        async def spoof_events() -> bool:
            async with ctl.store.tx(readonly=True) as tx:
                events[:] = await tx.events.list(limit=1000)
            keys = {e.routing_key for e in events}
            return {f"device.spoofed.{enrolled[0]}", f"device.discovered.{newcomer}"} <= keys

        await wait_for(spoof_events, timeout=10)
        spoofed = next(e for e in events if e.routing_key.startswith("device.spoofed."))
        assert spoofed.payload["source"] == "127.1.3.201"
        # Enrolled devices are not "discovered" newcomers.
        assert not any(e.routing_key == f"device.discovered.{enrolled[1]}" for e in events)
    finally:
        for responder in responders:
            await responder.close()


async def test_cli_discover_checks_keys_with_the_controller(
    site: tuple[Controller, SimFleet, int],
) -> None:
    """A faster spoofer of an enrolled uuid is flagged, the real device shown (issue 21)."""
    ctl, fleet, port = site
    victim = fleet.devices[0]
    assert victim.responder is not None and victim.identity is not None
    await victim.responder.close()  # answered again below, after the spoofer
    real_key = load_signing_key(victim.identity.key_path)
    assert real_key is not None
    spoofer_address = "127.1.3.66"
    impostor = stranger(spoofer_address, victim.runtime.info.uuid, "impostor")
    run = await discover_spoofer_first(
        Claimant(lambda: impostor, spoofer_address, Ed25519PrivateKey.generate()),
        Claimant(
            lambda: metadata_for(victim.runtime, victim.address, port), victim.address, real_key
        ),
        port,
        ["--timeout", "3", "--json"],
        {"HWFLEET_API": ctl.api_url, "HWFLEET_TOKEN": ctl.operator_token},
    )
    assert run.returncode == 0, run.err
    (doc,) = msgspec.json.decode(run.out)
    assert doc["uuid"] == victim.runtime.info.uuid
    # The real device is shown and trusted; the spoofer, though first, is the one flagged.
    assert doc["trusted"] is True and doc["enrolled"] is True and doc["conflict"] is False
    assert (doc["name"], doc["ipaddr"]) == (victim.runtime.info.name, victim.address)
    assert doc["spoofed"] is True and doc["spoof_source"] == spoofer_address
    assert "checked against the 3 keys enrolled at" in run.err
