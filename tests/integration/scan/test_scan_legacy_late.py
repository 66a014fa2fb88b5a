"""A legacy (seed-000 reference) device whose reply comes after its scan finished is still
recorded, so the next scan expects it and waits for it (docs/scan.md)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import msgspec
from tests.conftest import wait_for

from hwfleet.controller.scan import legacy_uuid


async def test_a_late_legacy_reply_is_recorded_for_the_next_scan(
    tmp_path: Path, mes_sim: Any, kit: SimpleNamespace, deadline: float
) -> None:
    agent = kit.SimDevice("u-1", 1, [("eth0", "00:00:00:00:00:01")])
    late = msgspec.json.encode(
        {"operationid": 1, "sn": "REF-LATE", "macinfo": {"eth0": {"macaddr": "00:00:00:00:0a:01"}}}
    )
    async with mes_sim(kit.profile_for([agent])) as (_, base):
        db = f"sqlite+aiosqlite:///{tmp_path / 'hw.db'}"
        async with kit.controller(db, "memory://", base, quiet=30.0) as ctl:
            fleet = kit.SimFleet(ctl.bus, [agent])
            await fleet.start()
            await fleet.register(ctl.store)
            first = await ctl.scans.start()
            state = await ctl.scans.watcher.state(first.operationid)
            assert state is not None
            await wait_for(lambda: not state.running, timeout=deadline)  # the agent answered

            await ctl.bus.send("hwinfo_queue", late)

            async def recorded() -> bool:
                async with ctl.store.tx(readonly=True) as tx:
                    return await tx.devices.get(legacy_uuid("REF-LATE")) is not None

            await wait_for(recorded, timeout=deadline)
            second = await ctl.scans.start()
    assert {(d["uuid"], d["sn"]) for d in second.expected} == {
        ("u-1", 1),
        (legacy_uuid("REF-LATE"), "REF-LATE"),
    }
