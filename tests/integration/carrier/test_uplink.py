"""The per-device carrier (``uplink`` exchange, the device's own queues) on the in-process bus.

The same path a device with its own RabbitMQ user takes (tests in
test_bus_credentials.py run it on the broker), here without a broker.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from tests.conftest import wait_for

from hwfleet.agent.links.bus import BusLink
from hwfleet.bus import MemoryBus
from hwfleet.controller.app import Controller
from hwfleet.protocol import envelope
from hwfleet.protocol.carrier import DEVICE_HEADER
from hwfleet.settings import ServerSettings
from hwfleet.sim.fleet import runtime_for
from hwfleet.sim.profiles import generate


@pytest.fixture
async def rig(tmp_path: Path, deadline: float) -> AsyncIterator[tuple[Controller, list[BusLink]]]:
    bus = MemoryBus()
    await bus.start()
    ctl = Controller(
        ServerSettings(
            data_dir=str(tmp_path),
            agent_listen="127.0.0.1:0",
            api_listen="127.0.0.1:0",
            call_timeout=5.0,
        ),
        bus=bus,
    )
    await ctl.start()
    profile = generate(2, seed=77)
    links = [
        BusLink(runtime_for(d, i, 77), bus, heartbeat=1.0, per_device=True)
        for i, d in enumerate(profile.devices)
    ]
    tasks = [asyncio.create_task(link.run()) for link in links]
    try:
        async with asyncio.timeout(deadline):
            await asyncio.gather(*(link.connected.wait() for link in links))
        yield ctl, links
    finally:
        for link in links:
            link.stop()
        await asyncio.gather(*tasks, return_exceptions=True)
        await ctl.close()
        await bus.close()


async def test_commands_calls_and_scan_replies_travel_the_uplink(
    rig: tuple[Controller, list[BusLink]],
) -> None:
    ctl, links = rig
    uuids = [link.runtime.info.uuid for link in links]
    pings = await ctl.devices.ping_many(uuids, timeout=5)
    assert all(p["ok"] for p in pings.values()), pings
    status = await ctl.devices.call(uuids[0], "status")
    assert status["st_id"] == 0
    before = ctl.scans.stored
    expected = [
        {"uuid": u, "sn": link.runtime.info.serial} for u, link in zip(uuids, links, strict=True)
    ]
    await ctl.scans.start(expected, quiet_timeout=30)
    await wait_for(lambda: ctl.scans.stored >= before + 2)


async def test_an_uplink_key_that_is_not_the_sender_is_dead_lettered(
    rig: tuple[Controller, list[BusLink]],
) -> None:
    ctl, links = rig
    mine, other = (link.runtime.info.uuid for link in links)
    before = ctl.bus.dead_lettered  # type: ignore[attr-defined]
    hs = envelope.command("handshake", {"uuid": other, "serial": 1, "name": "evil"})
    await ctl.bus.publish(
        "uplink", f"{mine}.inbound", envelope.encode(hs), headers={DEVICE_HEADER: other}
    )
    await wait_for(lambda: ctl.bus.dead_lettered > before)  # type: ignore[attr-defined]
    async with ctl.store.tx() as tx:
        row = await tx.devices.get(other)
    assert row is not None and row.name != "evil"
