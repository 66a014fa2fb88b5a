"""A real controller with its image server, a real agent process, and loop devices."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from tests.conftest import service_missing, wait_for
from tests.integration.controller.conftest import (
    PASSWORD,
    cli,
    controller_settings,
    running_controller,
)
from tests.integration.hardware.conftest import loop_device  # noqa: F401 - fixture

from hwfleet.controller.app import Controller

MIB = 1024 * 1024


@pytest.fixture
async def controller(tmp_path: Path) -> AsyncIterator[Controller]:
    settings = controller_settings(tmp_path / "controller", image_listen="127.0.0.1:0")
    async with running_controller(settings) as ctl:
        yield ctl


@dataclass
class Agent:
    uuid: str
    data_dir: Path
    cache_dir: Path
    proc: asyncio.subprocess.Process


def image_port(controller: Controller) -> int:
    assert controller.image_server is not None
    return controller.image_server.port


@pytest.fixture
def agent_args() -> list[str]:
    """More ``hwfleet agent`` options (a test parametrizes this to override)."""
    return []


@pytest.fixture
async def agent(
    controller: Controller, tmp_path: Path, deadline: float, agent_args: list[str]
) -> AsyncIterator[Agent]:
    """A real ``hwfleet agent`` (this machine's hardware), enrolled and online."""
    if os.geteuid() != 0:
        service_missing("writing images to loop devices needs root")
    data_dir, cache_dir = tmp_path / "agent", tmp_path / "cache"
    host, port = controller.gateway.address
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "hwfleet.cli",
        "agent",
        "--controller",
        f"{host}:{port}",
        "--data-dir",
        str(data_dir),
        "--no-discovery",
        "--mdp-listen",  # off: its default 0.0.0.0:12345 would take the port simulated
        "",  # devices' diagnostics endpoints use on 127.x in other tests
        "--image-server",
        f"127.0.0.1:{image_port(controller)}",
        "--image-cache",
        str(cache_dir),
        *agent_args,
        env={**os.environ, "HWFLEET_ENROLL_PASSWORD": PASSWORD},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        await wait_for(lambda: controller.devices.online(), timeout=deadline * 3)
        yield Agent(controller.devices.online()[0], data_dir, cache_dir, proc)
    finally:
        proc.terminate()
        async with asyncio.timeout(20):
            await proc.wait()


async def add_image(controller: Controller, path: Path, *extra: str) -> dict[str, Any]:
    code, out, err = await cli(controller, "images", "add", str(path), "--json", *extra)
    assert code == 0, err
    doc: dict[str, Any] = json.loads(out)
    return doc


async def run(controller: Controller, agent: Agent, method: str, **params: Any) -> dict[str, Any]:
    """``hwfleet run UUID METHOD --param k=v … --wait --json``: the reply (or the task)."""
    args = ["run", agent.uuid, method, "--wait", "--json", "--timeout", "120"]
    for key, value in params.items():
        args += ["--param", f"{key}={value if isinstance(value, str) else json.dumps(value)}"]
    code, out, err = await cli(controller, *args)
    if code == 1:
        return {"cli_error": err}
    doc: dict[str, Any] = json.loads(out)
    return doc


def disk_bytes(device: str, length: int) -> bytes:
    with open(device, "rb") as handle:
        return handle.read(length)


@pytest.fixture
def random_image(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "disk.raw"
    # Not a multiple of the sector size: the tail goes through the buffered path.
    path.write_bytes(os.urandom(6 * MIB + 1234))
    yield path
