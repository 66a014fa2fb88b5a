"""``hwfleet sim`` devices report to the monitoring host as real agents do: each simulated
device sends signed reports from its own loopback address every interval, and the
controller keeps the latest of each under the key it took custody of."""

from __future__ import annotations

import asyncio
from pathlib import Path

from tests.integration.mdp.sim_site import sim_site

from hwfleet.mdp.reports import latest_reports


async def test_simulated_devices_report_every_interval(tmp_path: Path, deadline: float) -> None:
    async with sim_site(
        tmp_path,
        deadline,
        seed=11,
        mdp_report_to=lambda ctl: f"127.0.0.1:{ctl.mdp_reports.port}",
        mdp_report_interval=0.3,
        mdp_report_operations=("load_and_memory",),
    ) as (ctl, fleet):
        data = ctl.settings.data_dir
        base = fleet.devices[0].address
        want = {d.address: d.runtime.info.uuid for d in fleet.devices}
        collector = ctl.mdp_reports
        # Reports sent before the controller held a device's key are dropped; the next
        # interval's get through.
        async with asyncio.timeout(deadline * 3):
            while True:
                got = {r["ip"]: r for r in latest_reports(data)}
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
                now = {r["ip"]: r for r in latest_reports(data)}[base]
                if now["received_at"] > first[1]:
                    break
        assert collector.counters["bad_key"] == 0
