"""Issue 21 High 2: one device must not make another unit pass burn-in.

The attacker is an enrolled device. The victim's real MACs do not match its MES
record (it must fail); the attacker answers the scan with the victim's serial and the
MACs the MES lists for it. Before the fix the victim's serial was listed twice in the
deviceScan document — the forged entry passing — and sent to Pair. Now a reply's serial
must be the one its device enrolled with; anything else is refused, announced as
``scan.refused.<op>`` and counted, and the document has one entry per unit.

Both carriers: stream agents (whose replies the controller relays, so a reply naming
another uuid is answered under the connection's own) and AMQP (real RabbitMQ; the
attacker publishes raw replies, as any holder of bus credentials could).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aio_pika
import msgspec
import pytest
from tests.conftest import wait_for

from hwfleet.agent.links.bus import BusLink
from hwfleet.agent.runtime import AgentRuntime
from hwfleet.bus import Delivery
from hwfleet.bus.amqp import AmqpBus
from hwfleet.controller.app import Controller
from hwfleet.protocol import methods
from hwfleet.protocol.inventory import ScanParams
from hwfleet.settings import ServerSettings
from hwfleet.sim.fleet import FleetOptions, SimFleet, runtime_for
from hwfleet.sim.mes import MesSimulator, serve
from hwfleet.sim.profiles import Profile, generate

PASSWORD = "scan-forgery-enroll-password"
#: What the MES lists for the victim: not its real MAC, so its own reply fails.
MES_MAC = "0a:bc:de:f0:12:34"


def _profile(seed: int) -> tuple[Profile, dict[str, Any]]:
    profile = generate(3, seed)  # attacker, victim, bystander
    victim = profile.devices[1]
    mes = msgspec.to_builtins(profile)
    row = {"serialNo": victim.sn, "macInfo": [{"interface": "eth0", "macaddr": MES_MAC}]}
    mes["mes"] = {"records": {str(victim.sn): [row]}}
    return profile, mes


def _forged(operationid: int, sn: Any, uuid: str | None) -> dict[str, Any]:
    reply: dict[str, Any] = {
        "operationid": operationid,
        "sn": sn,
        "macinfo": [{"interface": "eth0", "macaddr": MES_MAC}],
    }
    if uuid is not None:
        reply["uuid"] = uuid
    return reply


@dataclass
class Rig:
    ctl: Controller
    profile: Profile
    uuids: list[str]
    refused: list[dict[str, Any]] = field(default_factory=list)

    @property
    def victim_sn(self) -> Any:
        return self.profile.devices[1].sn

    async def watch_refusals(self) -> None:
        async def on_refused(delivery: Delivery) -> None:
            self.refused.append(msgspec.json.decode(delivery.body)["data"])

        await self.ctl.bus.subscribe("events", "scan.refused.#", on_refused)

    async def scan(self, deadline: float, expected: int = 3) -> dict[str, Any]:
        """A scan of every online device; its stored document once it has finished."""
        record = await self.ctl.scans.start()
        assert len(record.expected) == expected
        state = await self.ctl.scans.watcher.state(record.operationid)
        assert state is not None
        await wait_for(lambda: not state.running, timeout=deadline)
        async with self.ctl.store.tx() as tx:
            done = await tx.scans.get(record.operationid)
        assert done is not None and done.document is not None
        return done.document


def _check_one_entry_per_unit(rig: Rig, document: dict[str, Any]) -> None:
    serials = [json.dumps(e["sn"]) for e in document["scaninfo"]]
    assert len(serials) == len(set(serials)) == 3, document["scaninfo"]
    victim = next(e for e in document["scaninfo"] if e["sn"] == rig.victim_sn)
    # The victim's own reply: its real MACs scored "0", the MES's added as "0".
    assert victim["result"] == "0", victim
    assert {m["macaddr"] for m in victim["macinfo"]} == {MES_MAC} | {
        nic.mac for nic in rig.profile.devices[1].interfaces
    }
    assert {m["scanstatus"] for m in victim["macinfo"]} == {"0"}


def _settings(tmp_path: Path, mes: str, **extra: Any) -> ServerSettings:
    return ServerSettings(
        data_dir=str(tmp_path / "ctl"),
        agent_listen="127.0.0.1:0",
        api_listen="127.0.0.1:0",
        mes=mes,
        enroll_password=PASSWORD,
        scan_quiet_timeout=1.5,
        call_timeout=5.0,
        **extra,
    )


# -- stream carrier ----------------------------------------------------------------------


@pytest.fixture
async def stream_rig(tmp_path: Path, deadline: float) -> AsyncIterator[tuple[Rig, SimFleet]]:
    profile, mes_profile = _profile(2101)
    async with serve(MesSimulator.from_profile(mes_profile)) as mes:
        ctl = Controller(_settings(tmp_path, mes))
        fleet: SimFleet | None = None
        try:
            await ctl.start()
            host, port = ctl.gateway.address
            fleet = SimFleet(
                profile,
                host,
                port,
                options=FleetOptions(
                    seed=2101,
                    data_dir=str(tmp_path / "sim"),
                    enroll_password=PASSWORD,
                    heartbeat=1.0,
                    reconnect_min=0.05,
                    reconnect_max=0.5,
                ),
            )
            await fleet.start()
            assert await fleet.wait_connected(deadline) == 3
            rig = Rig(ctl, profile, [d.runtime.info.uuid for d in fleet.devices])
            await rig.watch_refusals()
            yield rig, fleet
        finally:
            if fleet is not None:
                await fleet.close()
            await ctl.close()


def _answer_as(
    sn: Any, uuid: str | None
) -> Callable[[AgentRuntime, ScanParams], Awaitable[dict[str, Any]]]:
    async def forged(_rt: AgentRuntime, params: ScanParams) -> dict[str, Any]:
        return _forged(params.operationid, sn, uuid)

    return forged


@pytest.mark.parametrize("claim_uuid", [False, True], ids=["own-uuid", "victim-uuid"])
async def test_stream_agent_answering_with_another_units_serial_is_refused(
    stream_rig: tuple[Rig, SimFleet], deadline: float, claim_uuid: bool
) -> None:
    rig, fleet = stream_rig
    attacker = fleet.devices[0].runtime
    victim_uuid = rig.uuids[1]
    forged = _answer_as(rig.victim_sn, victim_uuid if claim_uuid else None)
    attacker.registry.add(methods.SCAN, forged, ScanParams)

    document = await rig.scan(deadline)

    _check_one_entry_per_unit(rig, document)
    attacker_entry = next(e for e in document["scaninfo"] if e["sn"] == rig.profile.devices[0].sn)
    assert "no reply" in attacker_entry["error"]
    # (Refused each time the scan's trigger is sent again to the silent attacker.)
    assert rig.ctl.scans.refused >= 1
    await wait_for(lambda: len(rig.refused) == rig.ctl.scans.refused, timeout=deadline)
    for refusal in rig.refused:
        assert refusal["uuid"] == rig.uuids[0]  # the connection's uuid, whatever it claimed
        assert "enrolled with serial" in refusal["reason"]


# -- AMQP carrier --------------------------------------------------------------------------


@pytest.fixture
async def amqp_rig(
    amqp_url: str, tmp_path: Path, deadline: float
) -> AsyncIterator[tuple[Rig, str]]:
    profile, mes_profile = _profile(2102)
    async with serve(MesSimulator.from_profile(mes_profile)) as mes:
        ctl = Controller(_settings(tmp_path, mes, bus=amqp_url))
        agent_bus = AmqpBus(amqp_url, connect_timeout=10)
        links = [
            BusLink(runtime_for(device, index, 2102), agent_bus, heartbeat=1.0)
            for index, device in enumerate(profile.devices)
        ]
        tasks: list[asyncio.Task[None]] = []

        async def silent(_delivery: Delivery) -> None:
            """The attacker's own agent does not answer: its raw client below does."""

        links[0]._on_scan = silent  # type: ignore[method-assign]
        try:
            await ctl.start()
            await agent_bus.start()
            tasks = [asyncio.create_task(link.run()) for link in links]
            async with asyncio.timeout(deadline):
                await asyncio.gather(*(link.connected.wait() for link in links))
            rig = Rig(ctl, profile, [link.runtime.info.uuid for link in links])
            await rig.watch_refusals()
            yield rig, amqp_url
        finally:
            for link in links:
                link.stop()
            await asyncio.gather(*tasks, return_exceptions=True)
            await agent_bus.close()
            await ctl.close()


async def _attacker(url: str, replies: Callable[[int], list[dict[str, Any]]]) -> Any:
    """A raw AMQP client bound to ``devicescan`` that answers each trigger with ``replies``."""
    connection = await aio_pika.connect(url)
    channel = await connection.channel()
    queue = await channel.declare_queue(exclusive=True)
    await queue.bind("devicescan")

    async def on_trigger(message: aio_pika.abc.AbstractIncomingMessage) -> None:
        operationid = json.loads(message.body)["operationid"]
        for reply in replies(operationid):
            await channel.default_exchange.publish(
                aio_pika.Message(json.dumps(reply).encode(), delivery_mode=2),
                routing_key="hwinfo_queue",
            )

    await queue.consume(on_trigger, no_ack=True)
    return connection


@pytest.mark.rabbit
async def test_amqp_device_answering_with_another_units_serial_is_refused(
    amqp_rig: tuple[Rig, str], deadline: float
) -> None:
    rig, url = amqp_rig
    attacker_uuid = rig.uuids[0]
    connection = await _attacker(url, lambda op: [_forged(op, rig.victim_sn, attacker_uuid)] * 2)
    try:
        document = await rig.scan(deadline)
    finally:
        await connection.close()
    _check_one_entry_per_unit(rig, document)
    assert rig.ctl.scans.refused >= 2
    await wait_for(lambda: len(rig.refused) == rig.ctl.scans.refused, timeout=deadline)
    assert {r["uuid"] for r in rig.refused} == {attacker_uuid}


@pytest.mark.rabbit
async def test_amqp_unenrolled_reply_cannot_stand_in_for_an_enrolled_unit(
    amqp_rig: tuple[Rig, str], deadline: float
) -> None:
    """A reply without a uuid is a legacy device's: it may not claim an enrolled serial, and
    two such replies for one serial are one unit."""
    rig, url = amqp_rig
    connection = await _attacker(
        url,
        lambda op: [_forged(op, rig.victim_sn, None)] + [_forged(op, "LEGACY-7", None)] * 2,
    )
    try:
        document = await rig.scan(deadline)
    finally:
        await connection.close()
    serials = [json.dumps(e["sn"]) for e in document["scaninfo"]]
    assert len(serials) == len(set(serials)) == 4  # three enrolled units and one legacy
    attacker = next(e for e in document["scaninfo"] if e["sn"] == rig.profile.devices[0].sn)
    assert "no reply" in attacker["error"]  # its agent is silent: the scan ran to the timeout
    assert json.dumps("LEGACY-7") in serials
    victim = next(e for e in document["scaninfo"] if e["sn"] == rig.victim_sn)
    assert victim["result"] == "0"
    await wait_for(lambda: len(rig.refused) >= 1, timeout=deadline)
    for refusal in rig.refused:
        assert refusal["uuid"] is None and refusal["sn"] == rig.victim_sn
        assert "enrolled device" in refusal["reason"]


@pytest.mark.rabbit
async def test_amqp_reply_from_a_device_the_scan_does_not_expect_is_refused(
    amqp_rig: tuple[Rig, str], deadline: float
) -> None:
    rig, url = amqp_rig
    stranger = "6f1c2a3b-0000-4000-8000-000000000001"
    connection = await _attacker(url, lambda op: [_forged(op, "STRANGER-1", stranger)])
    try:
        document = await rig.scan(deadline)
    finally:
        await connection.close()
    assert len(document["scaninfo"]) == 3
    await wait_for(lambda: len(rig.refused) >= 1, timeout=deadline)
    for refusal in rig.refused:
        assert refusal["uuid"] == stranger and "not expected" in refusal["reason"]
