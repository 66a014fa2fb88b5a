"""A real controller (SQLite, memory bus, gateway on loopback) and simulated devices."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from hwfleet.controller.app import Controller
from hwfleet.controller.events import utcnow
from hwfleet.settings import ServerSettings
from hwfleet.sim.fleet import SimFleet
from hwfleet.sim.profiles import Profile, generate

PASSWORD = "correct horse battery staple"
HWFLEET = [sys.executable, "-m", "hwfleet.cli"]


def controller_settings(data_dir: Path, **overrides: Any) -> ServerSettings:
    """A controller on loopback ports chosen by the kernel, with the memory bus and SQLite."""
    values: dict[str, Any] = {
        "data_dir": str(data_dir),
        "agent_listen": "127.0.0.1:0",
        "api_listen": "127.0.0.1:0",
        "bus": "memory://",
        "enroll_password": PASSWORD,
        "call_timeout": 5.0,
        **overrides,
    }
    return ServerSettings(**values)


@asynccontextmanager
async def running_controller(settings: ServerSettings) -> AsyncIterator[Controller]:
    ctl = Controller(settings)
    await ctl.start()
    try:
        yield ctl
    finally:
        await ctl.close()


@pytest.fixture
async def controller(tmp_path: Path) -> AsyncIterator[Controller]:
    async with running_controller(controller_settings(tmp_path / "controller")) as ctl:
        yield ctl


def sim_fleet(controller: Controller, profile: Profile, seed: int, data_dir: Path) -> SimFleet:
    """``profile``'s devices for ``controller`` (the password, quick reconnects), not started."""
    host, port = controller.gateway.address
    return SimFleet(
        profile,
        host,
        port,
        seed=seed,
        reconnect_min=0.05,
        reconnect_max=0.5,
        data_dir=str(data_dir),
        enroll_password=PASSWORD,
    )


@asynccontextmanager
async def connected_fleet(
    controller: Controller, profile: Profile, seed: int, tmp_path: Path, deadline: float
) -> AsyncIterator[SimFleet]:
    """``profile``'s devices enrolled with the password and connected to ``controller``."""
    sim = sim_fleet(controller, profile, seed, tmp_path / "sim")
    await sim.start()
    try:
        assert await sim.wait_connected(deadline) == len(profile.devices)
        yield sim
    finally:
        await sim.close()


@pytest.fixture
async def fleet(controller: Controller, deadline: float, tmp_path: Path) -> AsyncIterator[SimFleet]:
    async with connected_fleet(controller, generate(5, seed=11), 11, tmp_path, deadline) as sim:
        yield sim


async def add_offline_device(
    controller: Controller, uuid: str, serial: int = 9999, name: str = "", st_id: int = 0
) -> None:
    """A device the controller knows (a stored row) but that is not connected."""
    async with controller.store.tx() as tx:
        await tx.devices.upsert(
            uuid,
            serial=serial,
            name=name or f"offline-{serial}",
            model_id="X",
            version="1",
            macs=[],
            ipaddr="127.1.9.9",
            st_id=st_id,
            transport="stream",
            online=False,
            at=utcnow(),
        )


def cli_env(controller: Controller, **env: str) -> dict[str, str]:
    """The environment an operator command needs to reach ``controller``."""
    return {
        **os.environ,
        "HWFLEET_API": controller.api_url,
        "HWFLEET_TOKEN": controller.operator_token,
        **env,
    }


async def cli(controller: Controller, *args: str, **env: str) -> tuple[int, str, str]:
    """Run ``hwfleet ARGS`` against ``controller``: exit code, stdout, stderr."""
    proc = await asyncio.create_subprocess_exec(
        *HWFLEET,
        *args,
        env=cli_env(controller, **env),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(60):
        out, err = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()
