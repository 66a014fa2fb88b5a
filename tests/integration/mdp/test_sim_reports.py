"""``hwfleet sim`` devices report to the monitoring host as real agents do: each simulated
device sends signed reports from its own loopback address every interval, and the
controller keeps the latest of each under the key it took custody of."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

from tests.integration.controller.conftest import PASSWORD, controller_settings

from hwfleet.controller.app import Controller
from hwfleet.mdp.reports import latest_reports
from hwfleet.sim.fleet import FleetOptions, SimFleet
from hwfleet.sim.profiles import generate


async def test_simulated_devices_report_every_interval(tmp_path: Path, deadline: float) -> None:
    settings = controller_settings(tmp_path / "ctl", mdp_report_listen="127.0.0.1:0")
    ctl = Controller(settings)
    await ctl.start()
    host, gateway_port = ctl.gateway.address
    base = f"127.{random.randint(40, 250)}.{random.randint(0, 255)}.1"
    fleet = SimFleet(
        generate(2, seed=11),
        host,
        gateway_port,
        options=FleetOptions(
            seed=11,
            data_dir=str(tmp_path / "sim"),
            enroll_password=PASSWORD,
            address_base=base,
            mdp_port=12345,
            mdp_report_to=f"127.0.0.1:{ctl.mdp_reports.port}",
            mdp_report_interval=0.3,
            mdp_report_operations=("load_and_memory",),
        ),
    )
    try:
        await fleet.start()
        assert await fleet.wait_connected(deadline * 3) == 2
        want = {d.address: d.runtime.info.uuid for d in fleet.devices}
        collector = ctl.mdp_reports
        # Reports sent before the controller held a device's key are dropped; the next
        # interval's get through.
        async with asyncio.timeout(deadline * 3):
            while True:
                got = {r["ip"]: r for r in latest_reports(settings.data_dir)}
                if set(got) == set(want):
                    break
                collector.updated.clear()
                await collector.updated.wait()
        for ip, report in got.items():
            assert report["machine"] == want[ip]
            assert list(report["operations"]) == ["load_and_memory"]
            assert report["operations"]["load_and_memory"]["status"] is True
        # They keep coming: a later report replaces the first.
        first = got[base]["ts"], got[base]["received_at"]
        async with asyncio.timeout(deadline * 3):
            while True:
                collector.updated.clear()
                await collector.updated.wait()
                now = {r["ip"]: r for r in latest_reports(settings.data_dir)}[base]
                if now["received_at"] > first[1]:
                    break
        assert collector.counters["bad_key"] == 0
    finally:
        await fleet.close()
        await ctl.close()
