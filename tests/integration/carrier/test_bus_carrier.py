"""Agents on the bus: the controller treats them exactly as stream devices.

Written once, run on the in-process bus and on RabbitMQ.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from tests.conftest import wait_for

from hwfleet.bus import open_bus
from hwfleet.bus.base import Bus
from hwfleet.controller.app import Controller
from hwfleet.protocol.carrier import DEVICE_HEADER, INBOUND_QUEUE
from hwfleet.settings import ServerSettings
from hwfleet.sim.fleet import SimFleet
from hwfleet.sim.profiles import generate


@pytest.fixture(params=["memory", pytest.param("amqp", marks=pytest.mark.rabbit)])
async def buses(request: pytest.FixtureRequest) -> AsyncIterator[tuple[Bus, Bus]]:
    """(controller's bus, devices' bus): one object in memory, two connections on RabbitMQ."""
    if request.param == "memory":
        bus = open_bus("memory://")
        await bus.start()
        yield bus, bus
        await bus.close()
        return
    url = request.getfixturevalue("amqp_url")
    a, b = open_bus(url), open_bus(url)
    await a.start()
    await b.start()
    try:
        yield a, b
    finally:
        await b.close()
        await a.close()


@pytest.fixture
async def setup(
    buses: tuple[Bus, Bus], tmp_path: Path, deadline: float
) -> AsyncIterator[tuple[Controller, SimFleet]]:
    controller_bus, device_bus = buses
    settings = ServerSettings(
        data_dir=str(tmp_path),
        agent_listen="127.0.0.1:0",
        api_listen="127.0.0.1:0",
        call_timeout=5.0,
    )
    ctl = Controller(settings, bus=controller_bus)
    await ctl.start()
    fleet = SimFleet(
        generate(4, seed=5),
        bus=device_bus,
        seed=5,
        heartbeat=1.0,
        reconnect_min=0.05,
        reconnect_max=0.2,
    )
    await fleet.start()
    try:
        assert await fleet.wait_connected(deadline) == 4
        yield ctl, fleet
    finally:
        await fleet.close()
        await ctl.close()


async def test_bus_devices_are_online_and_answer(setup: tuple[Controller, SimFleet]) -> None:
    ctl, fleet = setup
    uuids = [d.runtime.info.uuid for d in fleet.devices]
    async with ctl.store.tx() as tx:
        rows = {r.uuid: r for r in await tx.devices.list()}
    assert set(rows) == set(uuids)
    assert {r.transport for r in rows.values()} == {"amqp"}
    assert all(r.state == "online" for r in rows.values())
    # The controller sees only the broker: each device reports its own address.
    assert {rows[d.runtime.info.uuid].ipaddr for d in fleet.devices} == {
        d.address for d in fleet.devices
    }
    pings = await ctl.devices.ping_many(uuids, timeout=5)
    assert all(p["ok"] for p in pings.values()), pings
    status = await ctl.devices.call(uuids[0], "status")
    assert status["st_id"] == 0
    inventory = await ctl.devices.call(uuids[1], "inventory")
    expected = [n.mac for n in fleet.devices[1].runtime.hardware.inventory().interfaces]
    assert [n["mac"] for n in inventory["interfaces"]] == expected


async def test_long_task_over_the_bus(setup: tuple[Controller, SimFleet]) -> None:
    ctl, fleet = setup
    uuid = fleet.devices[2].runtime.info.uuid
    record = await ctl.tasks.start(uuid, "decom.qc", {"spec": {"nic_count": 1000}})
    done = await ctl.tasks.wait(record.id, timeout=10)
    assert done is not None and done.state == "error" and "nic_count" in (done.msg or "")


async def test_garbage_on_the_inbound_queue_is_dead_lettered(
    setup: tuple[Controller, SimFleet], buses: tuple[Bus, Bus]
) -> None:
    ctl, fleet = setup
    _, device_bus = buses
    before = ctl.bus.dead_lettered  # type: ignore[attr-defined]
    uuid = fleet.devices[0].runtime.info.uuid
    await device_bus.send(INBOUND_QUEUE, b"not json", headers={DEVICE_HEADER: uuid})
    await device_bus.send(
        INBOUND_QUEUE,
        b'{"version": "1", "id": "x", "method": "ping"}',
        headers={DEVICE_HEADER: "not-a-uuid"},
    )
    await wait_for(lambda: ctl.bus.dead_lettered >= before + 2)  # type: ignore[attr-defined]
    pings = await ctl.devices.ping_many([d.runtime.info.uuid for d in fleet.devices], timeout=5)
    assert all(p["ok"] for p in pings.values())


async def test_a_device_cannot_speak_for_another(
    setup: tuple[Controller, SimFleet], buses: tuple[Bus, Bus]
) -> None:
    """A handshake whose uuid differs from the sender header is refused, with a reply."""
    from hwfleet.bus.base import Delivery
    from hwfleet.protocol import envelope

    ctl, fleet = setup
    _, device_bus = buses
    victim = fleet.devices[0].runtime.info.uuid
    liar = "0f0f0f0f-0000-4000-8000-000000000001"
    replies: asyncio.Queue[bytes] = asyncio.Queue()

    async def on_reply(delivery: Delivery) -> None:
        await replies.put(delivery.body)

    subscription = await device_bus.subscribe("agents", liar, on_reply)
    try:
        hs = envelope.command("handshake", {"uuid": victim, "serial": 1, "name": "evil"})
        await device_bus.send(INBOUND_QUEUE, envelope.encode(hs), headers={DEVICE_HEADER: liar})
        async with asyncio.timeout(10):
            reply = envelope.decode(await replies.get())
    finally:
        await subscription.cancel()
    assert isinstance(reply, envelope.Error) and reply.id == hs.id
    assert reply.error.code == "refused" and victim in reply.error.msg
    async with ctl.store.tx() as tx:
        row = await tx.devices.get(victim)
    assert row is not None and row.name != "evil"
    assert ctl.devices.get(liar) is None
