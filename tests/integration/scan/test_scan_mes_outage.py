"""A MES that is down mid-scan: lookups wait (up to ``mes_retry_for``), and failures read well.

The MES here is a real mes-sim on a real port that the test stops and starts
again on the same port, so the controller sees connections refused, not
answers it could mistake for records.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from hwfleet.integrations.mes import MesClient
from hwfleet.settings import ServerSettings, load
from hwfleet.sim.mes import MesSimulator, serve

QUIET = 0.5
#: Longer than the quiet timeout, and than the 5 s these tests' MES client used to retry.
OUTAGE = 6.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def rack(kit: SimpleNamespace, n: int = 3) -> list[Any]:
    return [
        kit.SimDevice(f"u-{i}", 8100 + i, [("eth0", f"02:00:00:00:81:{i:02x}")]) for i in range(n)
    ]


@dataclass
class Rig:
    """A controller whose MES (not running yet) will listen on ``port``."""

    fleet: list[Any]
    sim: MesSimulator
    base: str
    port: int
    ctl: Any
    finished: asyncio.Queue[dict[str, Any]]


@asynccontextmanager
async def rig_with_mes_down(
    tmp_path: Path, kit: SimpleNamespace, *, mes_retry_for: float
) -> AsyncIterator[Rig]:
    fleet = rack(kit)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    db = f"sqlite+aiosqlite:///{tmp_path / 'hw.db'}"
    async with kit.controller(
        db, "memory://", base, quiet=QUIET, mes_retry_for=mes_retry_for
    ) as ctl:
        devices = kit.SimFleet(ctl.bus, fleet)
        await devices.start()
        await devices.register(ctl.store)
        finished = await kit.finished_events(ctl.bus)
        sim = MesSimulator.from_profile(kit.profile_for(fleet))
        yield Rig(fleet, sim, base, port, ctl, finished)


def test_the_lookup_retry_window_is_a_setting_that_rides_out_minutes(tmp_path: Path) -> None:
    assert ServerSettings().mes_retry_for >= 120  # a typical MES outage lasts minutes
    assert MesClient.from_settings(ServerSettings()).retry_for == ServerSettings().mes_retry_for
    config = tmp_path / "hwfleet.toml"
    config.write_text("[server]\nmes_retry_for = 42.0\n")
    from_file = load(ServerSettings, env={}, config_file=config, section="server")
    assert MesClient.from_settings(from_file).retry_for == 42.0
    from_env = load(ServerSettings, env={"HWFLEET_MES_RETRY_FOR": "600"})
    assert MesClient.from_settings(from_env).retry_for == 600.0
    from_flag = load(ServerSettings, env={}, flags={"mes_retry_for": 7.5})
    assert MesClient.from_settings(from_flag).retry_for == 7.5


async def test_mes_down_longer_than_the_quiet_timeout_delays_the_scan(
    tmp_path: Path, kit: SimpleNamespace
) -> None:
    async with rig_with_mes_down(tmp_path, kit, mes_retry_for=60.0) as rig:
        fleet, base, ctl, finished = rig.fleet, rig.base, rig.ctl, rig.finished
        await ctl.scans.start()
        await asyncio.sleep(OUTAGE)  # the MES stays down: an outage, not a synchronisation
        assert finished.empty(), "the scan finished while its lookups waited for the MES"
        async with serve(rig.sim, port=rig.port):
            async with asyncio.timeout(30):
                data = await finished.get()
            assert data["state"] == "complete" and data["passed"] == len(fleet), data

            async def delivered() -> bool:
                return len((await kit.received(base))["posts"]) >= 3

            await kit.eventually(delivered, timeout=30)
            posts = {p["path"]: p["body"] for p in (await kit.received(base))["posts"]}
    assert posts["/notifications/devicescan"]["status"] == f"{len(fleet)} devices passed scanning"


async def test_mes_down_past_the_window_fails_the_scan_in_one_readable_sentence(
    tmp_path: Path, kit: SimpleNamespace
) -> None:
    async with rig_with_mes_down(tmp_path, kit, mes_retry_for=1.0) as rig:
        fleet, base, ctl, finished = rig.fleet, rig.base, rig.ctl, rig.finished
        scan = await ctl.scans.start()
        async with asyncio.timeout(30):
            data = await finished.get()
        assert data["state"] == "failed", data

        async def tried_to_post() -> bool:
            async with ctl.store.tx(readonly=True) as tx:
                rows = await tx.outbox.list()
            return bool(rows) and all(row.last_error for row in rows)

        await kit.eventually(tried_to_post, timeout=30)
        async with ctl.store.tx(readonly=True) as tx:
            errors = {row.kind: row.last_error for row in await tx.outbox.list()}
            record = await tx.scans.get(scan.operationid)
        async with serve(rig.sim, port=rig.port):

            async def delivered() -> bool:
                return len((await kit.received(base))["posts"]) >= 2  # nobody passed: no Pair

            await kit.eventually(delivered, timeout=30)
            posts = {p["path"]: p["body"] for p in (await kit.received(base))["posts"]}
    sentence = (
        f"internal error: the MES at {base} was unreachable for 1 s (connection refused), "
        f"for {len(fleet)} devices (0 devices passed scanning)"
    )
    assert posts["/notifications/devicescan"]["status"] == sentence
    assert record is not None and record.error == sentence
    assert errors["notification"] == f"POST {base}/notifications/devicescan: connection refused"
    assert errors["deviceScan"] == f"POST {base}/log/deviceScan: connection refused"
    for entry in posts["/log/deviceScan"]["scaninfo"]:  # each device keeps its own detail
        assert entry["result"] == "0"
        assert entry["error"].startswith(f"internal error: MES GET {base}/deviceInfo/getById")
        assert "unreachable (connection refused)" in entry["error"]
