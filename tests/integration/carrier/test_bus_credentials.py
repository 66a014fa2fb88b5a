"""Per-device RabbitMQ users: each AMQP device speaks as itself and only for itself.

The controller runs with ``--bus-credentials rabbitmqctl`` on the local broker;
simulated devices enroll over the TLS gateway with ``transport: "amqp"``, get
their own user, and connect as it. The broker refuses what a device may not
do (403), and the controller dead-letters what the broker cannot see.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import random
import shutil
import stat
import subprocess
import uuid as uuidlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aio_pika
import aiormq.exceptions
import pytest
from tests.conftest import service_missing, wait_for

from hwfleet.agent.links.amqp import AmqpAgentLink
from hwfleet.agent.links.bus_credentials import (
    CREDENTIALS_FILE,
    BusCredentials,
    obtain,
    with_credentials,
)
from hwfleet.agent.links.bus_credentials import load as load_credentials
from hwfleet.agent.links.enroll import enroll
from hwfleet.bus.amqp import AmqpBus
from hwfleet.bus.amqp_connect import BusUnavailableError
from hwfleet.controller.app import Controller
from hwfleet.integrations.rabbitmq_users import grants, vhost_of
from hwfleet.protocol import envelope
from hwfleet.protocol.carrier import DEVICE_HEADER, INBOUND_QUEUE, device_user
from hwfleet.settings import ServerSettings
from hwfleet.sim.fleet import FleetOptions, SimFleet
from hwfleet.sim.profiles import generate
from hwfleet.trust import AgentIdentity

pytestmark = pytest.mark.rabbit

PASSWORD = "enroll-for-bus-credentials"
CTL = shutil.which("rabbitmqctl")


async def rabbitmqctl(*args: str) -> Any:
    """Run rabbitmqctl with the JSON formatter; returns the parsed output."""
    assert CTL is not None
    result = await asyncio.to_thread(
        subprocess.run,
        [CTL, "-q", *args, "--formatter", "json"],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(result.stdout or "[]")


async def users() -> set[str]:
    return {row["user"] for row in await rabbitmqctl("list_users")}


async def connection_users() -> list[str]:
    return [row["user"] for row in await rabbitmqctl("list_connections", "user")]


def delete_users(names: list[str]) -> None:
    assert CTL is not None
    for name in names:
        subprocess.run([CTL, "-q", "delete_user", name], capture_output=True, check=False)


@dataclass
class Rig:
    ctl: Controller
    fleet: SimFleet
    url: str
    vhost: str
    uuids: list[str]

    def link(self, index: int) -> AmqpAgentLink:
        link = self.fleet.devices[index].link
        assert isinstance(link, AmqpAgentLink)
        return link

    def credentials(self, index: int) -> BusCredentials:
        identity = self.fleet.devices[index].identity
        assert identity is not None
        stored = load_credentials(identity)
        assert stored is not None
        return stored

    def device_url(self, index: int) -> str:
        return with_credentials(self.url, self.credentials(index))


@pytest.fixture
async def rig(
    amqp_url: str, tmp_path: Path, deadline: float, caplog: pytest.LogCaptureFixture
) -> AsyncIterator[Rig]:
    if CTL is None:
        service_missing("rabbitmqctl is not on this machine (remote broker)")
    caplog.set_level(logging.DEBUG)
    ctl = Controller(
        ServerSettings(
            data_dir=str(tmp_path / "ctl"),
            agent_listen="127.0.0.1:0",
            api_listen="127.0.0.1:0",
            bus=amqp_url,
            bus_credentials="rabbitmqctl",
            enroll_password=PASSWORD,
            call_timeout=5.0,
        )
    )
    profile = generate(2, seed=random.randint(1000, 9999))
    fleet: SimFleet | None = None
    uuids: list[str] = []
    try:
        await ctl.start()
        host, port = ctl.gateway.address
        fleet = SimFleet(
            profile,
            host,
            port,
            options=FleetOptions(
                data_dir=str(tmp_path / "sim"),
                enroll_password=PASSWORD,
                bus_url=amqp_url,
                heartbeat=1.0,
                reconnect_min=0.05,
                reconnect_max=0.5,
            ),
        )
        uuids = [d.runtime.info.uuid for d in fleet.devices]
        await fleet.start()
        # Each enrollment runs rabbitmqctl four times: allow for a busy machine.
        assert await fleet.wait_connected(deadline * 4) == 2
        yield Rig(ctl, fleet, amqp_url, vhost_of(amqp_url), uuids)
    finally:
        if fleet is not None:
            await fleet.close()
        await ctl.close()
        await asyncio.to_thread(delete_users, [device_user(u) for u in uuids])


async def test_each_device_has_its_own_limited_user_and_works(
    rig: Rig, caplog: pytest.LogCaptureFixture
) -> None:
    ctl, fleet = rig.ctl, rig.fleet
    names = {device_user(u) for u in rig.uuids}
    assert names <= await users()
    assert all(rig.link(i).per_device for i in range(2))
    for index, uuid in enumerate(rig.uuids):
        bus = rig.link(index).bus
        assert bus is not None and bus.url.startswith(f"amqp://{device_user(uuid)}:")

    # Permissions: only the device's own queues, the exchanges it binds from, the uplink.
    permissions = {
        row["user"]: row for row in await rabbitmqctl("list_permissions", "-p", rig.vhost)
    }
    topics = await rabbitmqctl("list_topic_permissions", "-p", rig.vhost)
    for uuid in rig.uuids:
        expected = grants(uuid)
        row = permissions[device_user(uuid)]
        assert (row["configure"], row["write"], row["read"]) == (
            expected.configure,
            expected.write,
            expected.read,
        )
        mine = {
            (t["exchange"], t["write"], t["read"]) for t in topics if t["user"] == device_user(uuid)
        }
        assert mine == set(expected.topics)

    # The credentials file is private; the password is in no log line.
    for device in fleet.devices:
        assert device.identity is not None
        path = device.identity.directory / CREDENTIALS_FILE
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    for index in range(2):
        assert rig.credentials(index).password not in caplog.text

    # ping, status, a task and a scan reply all travel with the device's own user.
    async with ctl.store.tx() as tx:
        rows = {r.uuid: r for r in await tx.devices.list()}
    assert {rows[u].transport for u in rig.uuids} == {"amqp"}
    pings = await ctl.devices.ping_many(rig.uuids, timeout=5)
    assert all(p["ok"] for p in pings.values()), pings
    status = await ctl.devices.call(rig.uuids[0], "status")
    assert status["st_id"] == 0
    record = await ctl.tasks.start(rig.uuids[1], "decom.qc", {"spec": {"nic_count": 1000}})
    done = await ctl.tasks.wait(record.id, timeout=10)
    assert done is not None and done.state == "error" and "nic_count" in (done.msg or "")
    expected_devices = [
        {"uuid": d.runtime.info.uuid, "sn": d.runtime.info.serial} for d in fleet.devices
    ]
    before = ctl.scans.stored
    await ctl.scans.start(expected_devices, quiet_timeout=30)
    await wait_for(lambda: ctl.scans.stored >= before + 2, timeout=20)
    assert ctl.bus.dead_lettered == 0  # type: ignore[attr-defined]


async def test_a_device_user_cannot_act_for_another(rig: Rig) -> None:
    ctl = rig.ctl
    mine, other = rig.uuids
    creds = rig.credentials(0)
    connection = await aio_pika.connect(rig.device_url(0))
    try:
        # Publishing under the other device's uuid: the broker closes the channel (403).
        channel = await connection.channel(publisher_confirms=True)
        uplink = await channel.get_exchange("hwfleet.uplink", ensure=False)
        with pytest.raises(aiormq.exceptions.ChannelAccessRefused, match="ACCESS_REFUSED"):
            await uplink.publish(
                aio_pika.Message(b"{}", user_id=creds.username), routing_key=f"{other}.inbound"
            )
            await channel.get_exchange("hwfleet.uplink")  # a round trip sees the close
        # Under its own uuid but claiming the other device: the controller dead-letters it.
        channel = await connection.channel(publisher_confirms=True)
        uplink = await channel.get_exchange("hwfleet.uplink", ensure=False)
        before = ctl.bus.dead_lettered  # type: ignore[attr-defined]
        hs = envelope.command("handshake", {"uuid": other, "serial": 1, "name": "evil"})
        await uplink.publish(
            aio_pika.Message(
                envelope.encode(hs), user_id=creds.username, headers={DEVICE_HEADER: other}
            ),
            routing_key=f"{mine}.inbound",
        )
        await wait_for(lambda: ctl.bus.dead_lettered > before)  # type: ignore[attr-defined]
        # Another user's name in user_id: refused by the broker.
        with pytest.raises(aiormq.exceptions.ChannelPreconditionFailed):
            await uplink.publish(
                aio_pika.Message(b"{}", user_id=device_user(other)), routing_key=f"{mine}.inbound"
            )
            await channel.get_exchange("hwfleet.uplink")
        # The default exchange (any queue by name) is out of reach.
        channel = await connection.channel(publisher_confirms=True)
        with pytest.raises(aiormq.exceptions.ChannelAccessRefused):
            await channel.default_exchange.publish(
                aio_pika.Message(b"{}", user_id=creds.username), routing_key="hwinfo_queue"
            )
            await channel.get_exchange("hwfleet.uplink")
        # Declaring or consuming the other device's queue: 403.
        channel = await connection.channel()
        with pytest.raises(aiormq.exceptions.ChannelAccessRefused, match="ACCESS_REFUSED"):
            await channel.declare_queue(f"hwfleet.agent.{other}", exclusive=True)
        channel = await connection.channel()
        queue = await channel.get_queue(f"hwfleet.agent.{other}", ensure=False)
        with pytest.raises(aiormq.exceptions.ChannelAccessRefused, match="ACCESS_REFUSED"):
            await queue.consume(ignore)
        channel = await connection.channel()
        queue = await channel.get_queue("hwfleet.agent.inbound", ensure=False)
        with pytest.raises(aiormq.exceptions.ChannelAccessRefused, match="ACCESS_REFUSED"):
            await queue.consume(ignore)
    finally:
        await connection.close()

    # Binding its own queue to the other device's commands: refused (topic read permission).
    rig.link(0).stop()
    await wait_for(lambda: not rig.link(0).connected.is_set())
    await wait_for(lambda: rig.link(0).bus is None)
    connection = await aio_pika.connect(rig.device_url(0))
    try:
        channel = await connection.channel()
        own = await channel.declare_queue(f"hwfleet.agent.{mine}", exclusive=True, auto_delete=True)
        await own.bind("hwfleet.agents", mine)
        with pytest.raises(aiormq.exceptions.ChannelAccessRefused, match="ACCESS_REFUSED"):
            await own.bind("hwfleet.agents", other)
    finally:
        await connection.close()

    # A holder of the shared credentials can no longer speak for a device either.
    before = ctl.bus.dead_lettered  # type: ignore[attr-defined]
    hs = envelope.command("handshake", {"uuid": other, "serial": 1, "name": "evil"})
    await ctl.bus.send(INBOUND_QUEUE, envelope.encode(hs), headers={DEVICE_HEADER: other})
    await wait_for(lambda: ctl.bus.dead_lettered > before)  # type: ignore[attr-defined]
    async with ctl.store.tx() as tx:
        row = await tx.devices.get(other)
    assert row is not None and row.name != "evil"
    pings = await ctl.devices.ping_many([other], timeout=5)
    assert pings[other]["ok"]


async def test_revoking_the_key_deletes_the_user_and_drops_its_connection(rig: Rig) -> None:
    ctl = rig.ctl
    victim, bystander = rig.uuids
    assert device_user(victim) in await connection_users()
    key = next(k for k in await ctl.keys.list_keys() if k["device_uuid"] == victim)
    await ctl.keys.reject(key["id"])
    assert device_user(victim) not in await users()
    await wait_for(lambda: no_connection_of(device_user(victim)), timeout=15, interval=0.5)
    assert device_user(bystander) in await users()
    pings = await ctl.devices.ping_many([bystander], timeout=5)
    assert pings[bystander]["ok"]


async def ignore(message: aio_pika.abc.AbstractIncomingMessage) -> None:
    pass


async def no_connection_of(user: str) -> bool:
    return user not in await connection_users()


async def test_a_device_enrolled_before_gets_credentials_over_mtls(
    amqp_url: str, tmp_path: Path
) -> None:
    """Enrolled without asking for bus access: ``bus.credentials`` on an mTLS link gives it."""
    if CTL is None:
        service_missing("rabbitmqctl is not on this machine (remote broker)")
    device = str(uuidlib.uuid4())
    settings = ServerSettings(
        data_dir=str(tmp_path / "ctl"),
        agent_listen="127.0.0.1:0",
        api_listen="127.0.0.1:0",
        bus=amqp_url,
        enroll_password=PASSWORD,
    )
    identity = AgentIdentity.load_or_create(tmp_path / "dev", device)
    off = Controller(settings)
    await off.start()
    try:
        host, port = off.gateway.address
        reply = await enroll(identity, host, port, password=PASSWORD, transport="amqp")
        assert "bus_username" not in reply and identity.is_enrolled
        # Provisioning off: the device is told to use the bus URL's credentials.
        assert await obtain(identity, host, port) is None
    finally:
        await off.close()
    on = Controller(msgspec_replace(settings, bus_credentials="rabbitmqctl"))
    await on.start()
    try:
        host, port = on.gateway.address
        got = await obtain(identity, host, port)
        assert got is not None and got.username == device_user(device)
        assert load_credentials(identity) == got
        bus = AmqpBus(with_credentials(amqp_url, got), declare=False)
        await bus.start()  # the broker takes the new user
        await bus.close()
        # Asking again changes the password of the existing user.
        again = await obtain(identity, host, port)
        assert again is not None and again.username == got.username
        assert again.password != got.password
        with pytest.raises(BusUnavailableError, match="refused the login"):
            await AmqpBus(with_credentials(amqp_url, got), declare=False).start()
        bus = AmqpBus(with_credentials(amqp_url, again), declare=False)
        await bus.start()
        await bus.close()
    finally:
        await on.close()
        await asyncio.to_thread(delete_users, [device_user(device)])


def msgspec_replace(settings: ServerSettings, **changes: Any) -> ServerSettings:
    import msgspec

    return msgspec.structs.replace(settings, **changes)
