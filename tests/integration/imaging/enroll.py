"""One simulated device enrolled with the controller: its identity holds a real certificate."""

from __future__ import annotations

from pathlib import Path

from tests.integration.controller.conftest import connected_fleet

from hwfleet.controller.app import Controller
from hwfleet.sim.profiles import generate
from hwfleet.trust.identity import AgentIdentity


async def enrolled_identity(controller: Controller, directory: Path) -> AgentIdentity:
    """Enroll one simulated device (password) and hand back its key and certificate."""
    async with connected_fleet(controller, generate(1, seed=5), 5, directory, 10.0) as sim:
        runtime = sim.devices[0].runtime
        data_dir = runtime.local.data_dir
        assert data_dir is not None
        identity = AgentIdentity.load_or_create(data_dir, runtime.info.uuid)
    assert identity.is_enrolled
    return identity
