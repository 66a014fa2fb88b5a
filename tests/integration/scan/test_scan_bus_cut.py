"""Issue 21 High 4: triggers lost with the devices' queues are sent again; nobody answers twice.

A broker restart deletes every device's exclusive queue and the scan trigger waiting in
it. A cuttable TCP proxy between each side and RabbitMQ does the same to the queues
(RabbitMQ deletes a vanished client's exclusive queues) and lets the test order events
exactly: the controller comes back and broadcasts the trigger while no device has a
queue, then the devices come back. Before the fix nothing sent the trigger again and
every device was posted as "no reply to the scan" at the quiet timeout.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlsplit

import msgspec
import pytest
from tests.conftest import wait_for
from tests.tcp_proxy import TcpProxy

from hwfleet.agent.links.bus import BusLink
from hwfleet.bus import Delivery, MemoryBus
from hwfleet.bus.amqp import AmqpBus
from hwfleet.controller.app import Controller
from hwfleet.settings import ServerSettings
from hwfleet.sim.fleet import runtime_for
from hwfleet.sim.mes import MesSimulator, serve
from hwfleet.sim.profiles import generate

SEED = 2104
DEVICES = 6
#: Far beyond the test's deadline: the scan can only finish by every device answering.
QUIET = 120.0


@pytest.fixture
async def proxies(amqp_url: str) -> AsyncIterator[tuple[TcpProxy, TcpProxy]]:
    broker = urlsplit(amqp_url)
    pair = (
        TcpProxy(broker.hostname or "127.0.0.1", broker.port or 5672),
        TcpProxy(broker.hostname or "127.0.0.1", broker.port or 5672),
    )
    for proxy in pair:
        await proxy.start()
    try:
        yield pair
    finally:
        for proxy in pair:
            await proxy.close()


@pytest.mark.rabbit
async def test_trigger_lost_with_the_device_queues_is_sent_again(
    amqp_url: str, proxies: tuple[TcpProxy, TcpProxy], tmp_path: Path, deadline: float
) -> None:
    to_controller, to_devices = proxies
    profile = generate(DEVICES, SEED)
    async with serve(MesSimulator.from_profile(msgspec.to_builtins(profile))) as mes:
        ctl = Controller(
            ServerSettings(
                data_dir=str(tmp_path / "ctl"),
                agent_listen="127.0.0.1:0",
                api_listen="127.0.0.1:0",
                bus=to_controller.url(amqp_url),
                mes=mes,
                scan_quiet_timeout=QUIET,
                call_timeout=5.0,
            )
        )
        agent_bus = AmqpBus(to_devices.url(amqp_url), connect_timeout=10, reconnect_interval=0.2)
        links = [
            BusLink(runtime_for(d, i, SEED), agent_bus, heartbeat=1.0, reconnect_min=0.1)
            for i, d in enumerate(profile.devices)
        ]
        tasks: list[asyncio.Task[None]] = []
        try:
            await ctl.start()
            await agent_bus.start()
            tasks = [asyncio.create_task(link.run()) for link in links]
            async with asyncio.timeout(deadline):
                await asyncio.gather(*(link.connected.wait() for link in links))

            # The broker "restarts": every connection is gone, and the devices' queues.
            await to_devices.cut()
            await to_controller.cut()
            starting = asyncio.create_task(ctl.scans.start())
            # The controller is back first: its trigger finds no device queue.
            await to_controller.resume()
            async with asyncio.timeout(deadline * 3):
                scan = await starting
            assert len(scan.expected) == DEVICES
            await to_devices.resume()

            state = await ctl.scans.watcher.state(scan.operationid)
            assert state is not None
            await wait_for(lambda: not state.running, timeout=deadline * 3)
            async with ctl.store.tx() as tx:
                done = await tx.scans.get(scan.operationid)
                results = await tx.scans.results(scan.operationid)
        finally:
            for link in links:
                link.stop()
            await asyncio.gather(*tasks, return_exceptions=True)
            await agent_bus.close()
            await ctl.close()
    assert done is not None and done.state == "complete", done
    assert done.document is not None
    entries = done.document["scaninfo"]
    assert len(entries) == DEVICES
    assert all(e["result"] == "1" for e in entries), entries  # each device's true result
    assert len(results) == DEVICES


async def test_an_agent_answers_a_repeated_operationid_once() -> None:
    """The trigger comes again while a scan waits for others: the answer is already sent."""
    bus = MemoryBus()
    await bus.start()
    profile = generate(1, SEED)
    link = BusLink(runtime_for(profile.devices[0], 0, SEED), bus)
    answered: list[int] = []

    async def on_reply(delivery: Delivery) -> None:
        answered.append(msgspec.json.decode(delivery.body)["operationid"])

    await bus.consume("hwinfo_queue", on_reply)
    try:
        # What the agent's devicescan subscription hands it, in order.
        for operationid, action in ((1, 1), (1, 1), (1, "scan"), (2, 1), (3, 2)):
            body = msgspec.json.encode({"operationid": operationid, "action": action})
            await link._on_scan(Delivery("devicescan", "", body))
        await wait_for(lambda: len(answered) >= 2)
    finally:
        await bus.close()
    assert sorted(answered) == [1, 2]
