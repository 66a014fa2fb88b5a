"""A real controller (SQLite, memory bus, gateway on loopback) and simulated devices."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from hwfleet.controller.app import Controller
from hwfleet.settings import ServerSettings
from hwfleet.sim.fleet import SimFleet
from hwfleet.sim.profiles import generate

PASSWORD = "correct horse battery staple"


@pytest.fixture
async def controller(tmp_path: Path) -> AsyncIterator[Controller]:
    settings = ServerSettings(
        data_dir=str(tmp_path / "controller"),
        agent_listen="127.0.0.1:0",
        api_listen="127.0.0.1:0",
        bus="memory://",
        enroll_password=PASSWORD,
        call_timeout=5.0,
    )
    ctl = Controller(settings)
    await ctl.start()
    try:
        yield ctl
    finally:
        await ctl.close()


@pytest.fixture
async def fleet(controller: Controller, deadline: float, tmp_path: Path) -> AsyncIterator[SimFleet]:
    host, port = controller.gateway.address
    sim = SimFleet(
        generate(5, seed=11),
        host,
        port,
        seed=11,
        reconnect_min=0.05,
        reconnect_max=0.5,
        data_dir=str(tmp_path / "sim"),
        enroll_password=PASSWORD,
    )
    await sim.start()
    try:
        assert await sim.wait_connected(deadline) == 5
        yield sim
    finally:
        await sim.close()
