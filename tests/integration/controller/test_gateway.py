"""The stream gateway against real sockets: devices connect, garbage is refused, others carry on."""

from __future__ import annotations

import asyncio
import contextlib
import json
from pathlib import Path

import pytest

from hwfleet.controller.app import Controller
from hwfleet.protocol.framing import STREAM_LIMIT
from hwfleet.settings import ServerSettings
from hwfleet.sim.fleet import SimFleet
from hwfleet.sim.profiles import generate
from hwfleet.trust import first_contact_context


async def all_answer(controller: Controller, fleet: SimFleet) -> None:
    uuids = [d.runtime.info.uuid for d in fleet.devices]
    results = await controller.devices.ping_many(uuids, timeout=5)
    assert all(r["ok"] for r in results.values()), results


async def test_devices_connect_and_are_recorded(controller: Controller, fleet: SimFleet) -> None:
    async with controller.store.tx() as tx:
        rows = {r.uuid: r for r in await tx.devices.list()}
    for device in fleet.devices:
        row = rows[device.runtime.info.uuid]
        assert row.state == "online"
        assert row.serial == device.runtime.info.serial
        assert row.name == device.runtime.info.name
        assert row.ipaddr == device.address  # each sim device has its own loopback address
        assert row.macs == [n.mac for n in device.runtime.hardware.inventory().interfaces]
    async with controller.store.tx() as tx:
        keys = [e.routing_key for e in await tx.events.list()]
    assert sum(k.startswith("device.online.") for k in keys) == 5
    await all_answer(controller, fleet)


async def test_ping_many_waits_once_and_reports_each_device(
    controller: Controller, fleet: SimFleet
) -> None:
    """One deadline for all: a device that never answers times out, the others answer at
    once, one not connected here says so, and every target gets exactly one result."""
    from typing import Any

    silent = fleet.devices[0]
    release = asyncio.Event()

    async def hang(_rt: object, _params: dict[str, Any]) -> dict[str, Any]:
        await release.wait()
        return {}

    silent.runtime.registry.add("ping", hang)  # this device only: the others still echo
    uuids = [d.runtime.info.uuid for d in fleet.devices]
    absent = "00000000-0000-4000-8000-000000000000"
    try:
        results = await controller.devices.ping_many([*uuids, absent], timeout=0.5)
    finally:
        release.set()
    assert list(results) == [*uuids, absent]
    assert results[uuids[0]]["ok"] is False
    assert "no reply within 0.5 s" in results[uuids[0]]["error"]
    for uuid in uuids[1:]:
        assert results[uuid]["ok"] is True, results[uuid]
        assert 0 <= results[uuid]["rtt_ms"] < 500
    assert results[absent] == {
        "ok": False,
        "rtt_ms": None,
        "error": f"device {absent} is not connected to this controller",
    }


async def raw(controller: Controller) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """An anonymous TLS client: what anyone on the network can open."""
    host, port = controller.gateway.address
    return await asyncio.open_connection(
        host, port, limit=STREAM_LIMIT, ssl=first_contact_context(None)
    )


async def read_reply(reader: asyncio.StreamReader) -> dict[str, object]:
    async with asyncio.timeout(5):
        line = await reader.readline()
    assert line, "connection closed without a reply"
    reply = json.loads(line)
    assert isinstance(reply, dict)
    return reply


async def expect_closed(reader: asyncio.StreamReader) -> None:
    """EOF, or a reset when the server closed with our unread bytes still queued."""
    async with asyncio.timeout(5):
        with contextlib.suppress(ConnectionResetError):
            assert await reader.read() == b""


@pytest.mark.parametrize(
    "line",
    [
        b"this is not json\n",
        b'{"method": "ping", "params": {}}\n',
        b"[1,2,3]\n",
        b'{"version": "1", "id": "x", "method": "ping", "params": {"s": "\xff\xfe"}}\n',
        b"\x00\x01\x02\xff\n",
    ],
    ids=["not-json", "no-version-id", "array", "invalid-utf8", "binary"],
)
async def test_garbage_gets_fatal_error_and_is_closed(
    controller: Controller, fleet: SimFleet, line: bytes
) -> None:
    reader, writer = await raw(controller)
    writer.write(line)
    reply = await read_reply(reader)
    assert isinstance(reply.get("fatal_error"), str) and reply["fatal_error"]
    await expect_closed(reader)
    writer.close()
    await all_answer(controller, fleet)


async def test_two_mebibyte_line_is_refused(controller: Controller, fleet: SimFleet) -> None:
    reader, writer = await raw(controller)
    writer.write(
        b'{"version": "1", "id": "big", "method": "ping", "params": {"x": "'
        + b"a" * (2 << 20)
        + b'"}}\n'
    )
    with contextlib.suppress(ConnectionError):  # it may close before reading everything
        await writer.drain()
    reply = await read_reply(reader)
    assert "longer than" in str(reply["fatal_error"])
    await expect_closed(reader)
    writer.close()
    await all_answer(controller, fleet)


async def bulky(runtime: object, params: dict[str, object]) -> dict[str, str]:
    """A device method whose reply is a 600 KiB line."""
    return {"blob": "b" * (600 * 1024)}


async def test_an_unidentified_link_gets_64_kib_lines_a_device_1_mib(
    controller: Controller, fleet: SimFleet
) -> None:
    """Issue 21 Medium 4: a link without a certificate cannot make the controller hold 1 MiB."""
    reader, writer = await raw(controller)
    writer.write(b'{"version": "1", "id": "big", "method": "enroll.hello", "params": {"x": "')
    writer.write(b"a" * (100 * 1024) + b'"}}\n')
    with contextlib.suppress(ConnectionError):
        await writer.drain()
    reply = await read_reply(reader)
    assert reply["fatal_error"] == "line longer than 65536 bytes"
    await expect_closed(reader)
    writer.close()
    # An enrolled device (certificate from our CA) still sends lines up to 1 MiB.
    device = fleet.devices[0]

    device.runtime.registry.add("test.bulky", bulky)
    result = await controller.devices.call(device.runtime.info.uuid, "test.bulky")
    assert len(result["blob"]) == 600 * 1024
    await all_answer(controller, fleet)


async def test_commands_before_handshake_are_refused(
    controller: Controller, fleet: SimFleet
) -> None:
    reader, writer = await raw(controller)
    for method in ("ping", "log", "task_status", "status", "inventory", "decom.disk_erase"):
        writer.write(
            json.dumps(
                {
                    "version": "1",
                    "id": method,
                    "method": method,
                    "params": {"level": "info", "msg": "x"},
                }
            ).encode()
            + b"\n"
        )
        reply = await read_reply(reader)
        assert reply["id"] == method
        error = reply["error"]
        assert isinstance(error, dict)
        assert error["code"] in ("unauthorized", "bad_params", "unknown_method")
    writer.write(b'{"version": "1", "id": "u", "method": "format_everything", "params": {}}\n')
    reply = await read_reply(reader)
    assert reply["error"] == {"msg": "unknown method 'format_everything'", "code": "unknown_method"}
    writer.write(b'{"version": "1", "id": "h", "method": "handshake", "params": {"uuid": 5}}\n')
    reply = await read_reply(reader)
    error = reply["error"]
    assert isinstance(error, dict) and error["code"] == "bad_params"
    # A well-formed handshake without a certificate is refused: enroll first.
    hs = {"uuid": "6c1d2a43-8f8e-4a3c-9a57-0c0e1f1b2d3e", "serial": 1}
    writer.write(
        json.dumps({"version": "1", "id": "h2", "method": "handshake", "params": hs}).encode()
        + b"\n"
    )
    reply = await read_reply(reader)
    error = reply["error"]
    assert isinstance(error, dict) and error["code"] == "unauthorized"
    assert controller.devices.get(hs["uuid"]) is None
    writer.close()
    await all_answer(controller, fleet)


async def test_disconnect_mid_line_leaves_others_connected(
    controller: Controller, fleet: SimFleet
) -> None:
    _reader, writer = await raw(controller)
    writer.write(b'{"version": "1", "id": "half')
    await writer.drain()
    writer.close()
    await writer.wait_closed()
    await all_answer(controller, fleet)
    assert len(controller.devices.online()) == 5


async def test_agent_survives_a_misbehaving_controller() -> None:
    """An agent whose controller sends garbage says why, drops the link and reconnects."""
    from hwfleet.agent.links.stream import StreamLink
    from hwfleet.sim.fleet import runtime_for
    from hwfleet.sim.profiles import generate

    received: list[bytes] = []
    connections = 0
    second = asyncio.Event()

    async def evil(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        received.append(await reader.readline())  # the handshake
        writer.write(b"}}} garbage {{{\n")
        await writer.drain()
        received.append(await reader.readline())  # the agent's fatal_error
        if connections >= 2:
            second.set()
        writer.close()

    server = await asyncio.start_server(evil, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    runtime = runtime_for(generate(1, seed=3).devices[0], 0, seed=3)  # plain TCP: the peer is ours
    link = StreamLink(runtime, "127.0.0.1", port, reconnect_min=0.01, reconnect_max=0.05)
    task = asyncio.create_task(link.run())
    try:
        async with asyncio.timeout(10):
            await second.wait()
    finally:
        link.stop()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        server.close()
    assert json.loads(received[0])["method"] == "handshake"
    assert "fatal_error" in json.loads(received[1])


async def test_insecure_link_gets_the_device_limit_once_its_handshake_succeeds(
    tmp_path: Path, deadline: float
) -> None:
    """Under --insecure a link is unidentified until its handshake: 64 KiB, then 1 MiB."""
    ctl = Controller(
        ServerSettings(
            data_dir=str(tmp_path / "ctl"),
            agent_listen="127.0.0.1:0",
            api_listen="127.0.0.1:0",
            insecure=True,
        )
    )
    await ctl.start()
    host, port = ctl.gateway.address
    fleet = SimFleet(generate(1, seed=3), host, port, seed=3, insecure=True)
    try:
        await fleet.start()
        assert await fleet.wait_connected(deadline) == 1
        device = fleet.devices[0]

        device.runtime.registry.add("test.bulky", bulky)
        result = await ctl.devices.call(device.runtime.info.uuid, "test.bulky")
        assert len(result["blob"]) == 600 * 1024
        assert ctl.gateway.guard.open_links == 0  # the device's link no longer counts
        # A plain link that has not sent its handshake is still held to 64 KiB.
        reader, writer = await asyncio.open_connection(host, port)
        writer.write(b'{"version": "1", "id": "x", "method": "ping", "params": {"x": "')
        writer.write(b"a" * (100 * 1024) + b'"}}\n')
        with contextlib.suppress(ConnectionError):
            await writer.drain()
        assert (await read_reply(reader))["fatal_error"] == "line longer than 65536 bytes"
        writer.close()
    finally:
        await fleet.close()
        await ctl.close()
