"""The scan watcher's view of which scans are running, under concurrency."""

from __future__ import annotations

import asyncio
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from hwfleet.store.records import RunningScan
from hwfleet.store.scans import ScanRepository


async def test_a_scan_started_during_a_sweep_is_not_taken_for_finished(
    tmp_path: Path, mes_sim: Any, kit: SimpleNamespace, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The sweep's list of running scans can predate a scan this replica just learned of.

    Taking that scan for "finished by another replica" made the replica drop every
    reply it then received as late (CI caught it with two replicas on PostgreSQL).
    """
    queried = asyncio.Event()
    release = asyncio.Event()
    original = ScanRepository.running_activity
    held = {"armed": False}

    async def held_query(self: ScanRepository) -> list[RunningScan]:
        snapshot = await original(self)
        if held["armed"]:
            held["armed"] = False
            queried.set()
            await release.wait()
        return snapshot

    monkeypatch.setattr(ScanRepository, "running_activity", held_query)
    devices = [kit.SimDevice("u-1", 1, [("eth0", "00:00:00:00:00:01")])]
    async with mes_sim(kit.profile_for(devices)) as (_, base):
        db = f"sqlite+aiosqlite:///{tmp_path / 'hw.db'}"
        async with kit.controller(db, "memory://", base, quiet=60.0) as ctl:
            await ctl.scans.watcher.close()  # no background sweeps: this test runs the one sweep
            held["armed"] = True
            sweep = asyncio.create_task(ctl.scans.watcher.sweep())
            async with asyncio.timeout(10):
                await queried.wait()  # the snapshot is taken: no scan is running in it
            scan = await ctl.scans.start([{"uuid": "u-1", "sn": 1}])
            release.set()
            await sweep
            state = ctl.scans.watcher.cached(scan.operationid)
            assert state is not None and state.running
            # And the device's reply is stored, not dropped as late.
            fleet = kit.SimFleet(ctl.bus, devices)
            await fleet.start()
            try:
                await ctl.scans.broadcast(scan.operationid)

                async def stored() -> bool:
                    return ctl.scans.stored == 1

                await kit.eventually(stored)
            finally:
                await fleet.close()
