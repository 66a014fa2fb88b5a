"""A handler that raises gets an error reply at once, and the link stays up (DESIGN §3).

Run on both carriers: a TLS stream to a real controller, and real RabbitMQ.
Before the fix the caller heard nothing: the stream link dropped, and on AMQP
the message was requeued, then dead-lettered, while the caller waited out its
timeout.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from hwfleet.bus import open_bus
from hwfleet.bus.base import Bus
from hwfleet.controller.app import Controller
from hwfleet.protocol.errors import RemoteError
from hwfleet.settings import ServerSettings
from hwfleet.sim.fleet import SimFleet
from hwfleet.sim.profiles import generate

PASSWORD = "handler-failures-enroll-secret"
#: Far below the call timeout: the answer must come at once, not when the caller gives up.
PROMPT = 3.0
CALL_TIMEOUT = 8.0


async def boom(runtime: Any, params: dict[str, Any]) -> None:
    raise RuntimeError(f"disk {params.get('disk')} vanished")


@pytest.fixture(params=["stream", pytest.param("amqp", marks=pytest.mark.rabbit)])
async def rig(
    request: pytest.FixtureRequest, tmp_path: Path, deadline: float
) -> AsyncIterator[tuple[Controller, SimFleet, Bus | None]]:
    settings = ServerSettings(
        data_dir=str(tmp_path / "ctl"),
        agent_listen="127.0.0.1:0",
        api_listen="127.0.0.1:0",
        call_timeout=CALL_TIMEOUT,
        enroll_password=PASSWORD,
    )
    device_bus: Bus | None = None
    if request.param == "stream":
        ctl = Controller(settings)
        await ctl.start()
        host, port = ctl.gateway.address
        fleet = SimFleet(
            generate(2, seed=11),
            host,
            port,
            seed=11,
            data_dir=str(tmp_path / "sim"),
            enroll_password=PASSWORD,
            reconnect_min=0.05,
            reconnect_max=0.2,
        )
    else:
        url = request.getfixturevalue("amqp_url")
        controller_bus, device_bus = open_bus(url), open_bus(url)
        await controller_bus.start()
        await device_bus.start()
        ctl = Controller(settings, bus=controller_bus)
        await ctl.start()
        fleet = SimFleet(
            generate(2, seed=11), bus=device_bus, seed=11, reconnect_min=0.05, reconnect_max=0.2
        )
    try:
        await fleet.start()
        assert await fleet.wait_connected(deadline) == 2
        yield ctl, fleet, device_bus
    finally:
        await fleet.close()
        await ctl.close()
        if device_bus is not None:
            await device_bus.close()
            await ctl.bus.close()


async def test_agent_handler_that_raises_answers_failed_and_keeps_the_link(
    rig: tuple[Controller, SimFleet, Bus | None],
) -> None:
    ctl, fleet, _ = rig
    device = fleet.devices[0]
    uuid = device.runtime.info.uuid
    device.runtime.registry.add("test.explode", boom)
    conn = ctl.devices.get(uuid)
    assert conn is not None

    started = time.monotonic()
    with pytest.raises(RemoteError) as failed:
        await ctl.devices.call(uuid, "test.explode", {"disk": "sda"})
    assert time.monotonic() - started < PROMPT
    assert failed.value.code == "failed"
    assert failed.value.msg == "test.explode failed: RuntimeError: disk sda vanished"
    # The same link still serves: no reconnect, and the next command is answered.
    assert (await ctl.devices.ping(uuid, timeout=5))["ok"]
    assert ctl.devices.get(uuid) is conn and not conn.session.closed
    pings = await ctl.devices.ping_many([d.runtime.info.uuid for d in fleet.devices], timeout=5)
    assert all(p["ok"] for p in pings.values()), pings


async def test_controller_handler_that_raises_answers_failed_and_keeps_the_link(
    rig: tuple[Controller, SimFleet, Bus | None], monkeypatch: pytest.MonkeyPatch
) -> None:
    ctl, fleet, _ = rig
    device = fleet.devices[1]
    uuid = device.runtime.info.uuid
    conn = ctl.devices.get(uuid)
    assert conn is not None
    dead_before = getattr(ctl.bus, "dead_lettered", 0)

    async def broken_update(*args: Any, **kwargs: Any) -> Any:
        raise OSError("task table is on fire")

    monkeypatch.setattr(ctl.tasks, "update", broken_update)
    session = device.runtime.session
    assert session is not None
    started = time.monotonic()
    with pytest.raises(RemoteError) as failed:
        await session.call(
            "task_status", {"task_id": "t-1", "state": "complete"}, timeout=CALL_TIMEOUT
        )
    assert time.monotonic() - started < PROMPT
    assert failed.value.code == "failed"
    assert failed.value.msg == "task_status failed: OSError: task table is on fire"
    # Answered, not requeued or dead-lettered, and the link is the same one.
    assert getattr(ctl.bus, "dead_lettered", 0) == dead_before
    assert (await session.call("ping", {"n": 1}, timeout=5)) == {"n": 1}
    assert device.runtime.session is session and not session.closed
    assert ctl.devices.get(uuid) is conn
    assert (await ctl.devices.ping(uuid, timeout=5))["ok"]
