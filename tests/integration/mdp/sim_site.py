"""A controller collecting diagnostics reports and a simulated fleet with endpoints on its own
block of loopback addresses (so parallel runs do not collide on :12345)."""

from __future__ import annotations

import contextlib
import random
from collections.abc import AsyncIterator
from pathlib import Path

from tests.integration.controller.conftest import PASSWORD, controller_settings

from hwfleet.controller.app import Controller
from hwfleet.sim.fleet import FleetOptions, SimFleet
from hwfleet.sim.profiles import generate

PORT = 12345


@contextlib.asynccontextmanager
async def sim_site(
    tmp_path: Path, deadline: float, seed: int = 7, **options: object
) -> AsyncIterator[tuple[Controller, SimFleet]]:
    """Two devices, enrolled and connected; ``options`` are more FleetOptions fields, and a
    callable value is called with the controller (addresses known only once it runs)."""
    ctl = Controller(controller_settings(tmp_path / "ctl", mdp_report_listen="127.0.0.1:0"))
    await ctl.start()
    host, gateway_port = ctl.gateway.address
    base = f"127.{random.randint(40, 250)}.{random.randint(0, 255)}.1"
    extra = {k: v(ctl) if callable(v) else v for k, v in options.items()}
    fleet = SimFleet(
        generate(2, seed=seed),
        host,
        gateway_port,
        options=FleetOptions(
            seed=seed,
            data_dir=str(tmp_path / "sim"),
            enroll_password=PASSWORD,
            address_base=base,
            mdp_port=PORT,
            **extra,  # type: ignore[arg-type]
        ),
    )
    try:
        await fleet.start()
        assert await fleet.wait_connected(deadline * 3) == 2
        yield ctl, fleet
    finally:
        await fleet.close()
        await ctl.close()
