"""A real controller (SQLite, memory bus) with simulated devices, for the graph engine."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from tests.integration.controller.conftest import (
    connected_fleet,
    controller_settings,
    running_controller,
)

from hwfleet.controller.app import Controller
from hwfleet.sim.fleet import SimFleet
from hwfleet.sim.profiles import generate


@pytest.fixture
async def controller(tmp_path: Path) -> AsyncIterator[Controller]:
    settings = controller_settings(tmp_path / "controller", graph_heartbeat=0.2, graph_lease=1.0)
    async with running_controller(settings) as ctl:
        yield ctl


@pytest.fixture
async def fleet(controller: Controller, deadline: float, tmp_path: Path) -> AsyncIterator[SimFleet]:
    async with connected_fleet(controller, generate(3, seed=5), 5, tmp_path, deadline) as sim:
        yield sim
