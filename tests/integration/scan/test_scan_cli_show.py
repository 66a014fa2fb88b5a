"""One scan at a time, and following or reviewing scans: ``hwfleet scans``, ``scan show OP``.

Issue 11: ``hwfleet scan`` told the operator to run ``hwfleet scan --wait``, which
started a second scan, and two scans at once both posted to the MES. A second
start is now refused (409) naming the running scan, and ``scan show`` follows it.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from tests.integration.scan.test_api_cli import TOKEN, api, run_cli

from hwfleet.errors import ScanRunningError

GHOST = [{"uuid": "ghost", "sn": 9009}]  # expected, never answers: the scan stays running


async def test_a_second_scan_is_refused_while_one_runs(
    tmp_path: Path, mes_sim: Any, kit: SimpleNamespace
) -> None:
    async with api(tmp_path, mes_sim, kit) as (url, ctl, _):
        running = await ctl.scans.start(GHOST, quiet_timeout=600)
        headers = {"Authorization": f"Bearer {TOKEN}"}
        async with httpx.AsyncClient(base_url=url, headers=headers) as http:
            second = await http.post("/api/v1/scans", json={})
        assert second.status_code == 409
        assert f"scan {running.operationid} is still running" in second.json()["detail"]
        code, out, err = await run_cli("scan", "--api", url)
        assert code == 1 and out == ""
        assert f"`hwfleet scan show {running.operationid} --wait`" in err
        async with ctl.store.tx(readonly=True) as tx:
            assert [s.operationid for s in await tx.scans.list()] == [running.operationid]
        try:
            await ctl.scans.start()
        except ScanRunningError as exc:
            assert exc.operationid == running.operationid
        else:
            raise AssertionError("the service started a second scan")


async def test_scans_lists_and_scan_show_follows_then_reviews(
    tmp_path: Path, mes_sim: Any, kit: SimpleNamespace
) -> None:
    async with api(tmp_path, mes_sim, kit) as (url, ctl, _):
        code, out, err = await run_cli("scan", "--api", url)
        assert code == 0, err
        assert "follow it with `hwfleet scan show 1 --wait`" in out
        assert "hwfleet scan --wait" not in out
        code, out, err = await run_cli("scan", "show", "1", "--wait", "--api", url)
        assert code == 0, err
        assert "scan 1: 2 of 3 devices passed" in out

        async with ctl.store.tx(readonly=True) as tx:
            first = await tx.scans.get(1)
        assert first is not None
        # The fleet and a ghost that never answers (a device outside a scan's expected set
        # is refused, so the fleet must be named): the scan stays running.
        ghost = await ctl.scans.start([*first.expected, *GHOST], quiet_timeout=600)

        async def fleet_answered() -> bool:
            async with ctl.store.tx(readonly=True) as tx:
                return len(await tx.scans.answered(ghost.operationid)) == 3

        await kit.eventually(fleet_answered)
        code, out, err = await run_cli("scans", "--json", "--api", url)
        assert code == 0, err
        listed = json.loads(out)
        assert [(s["operationid"], s["state"]) for s in listed] == [
            (ghost.operationid, "running"),
            (1, "complete"),
        ]
        assert (listed[0]["expected"], listed[0]["answered"], listed[0]["passed"]) == (4, 3, None)
        assert (listed[1]["expected"], listed[1]["answered"], listed[1]["passed"]) == (3, 3, 2)
        code, out, err = await run_cli("scans", "--api", url)
        assert code == 0 and "2 scans" in out and "running" in out

        code, out, err = await run_cli("scan", "show", str(ghost.operationid), "--api", url)
        assert code == 0, err
        assert f"scan {ghost.operationid}: running, 3 devices answered (4 expected)" in out

        # Follow it to its end (finished here, as its quiet timeout would) and review its posts.
        follower = asyncio.create_task(
            run_cli("scan", "show", str(ghost.operationid), "--wait", "--json", "--api", url)
        )
        await ctl.scans.finish(ghost.operationid, "quiet for 600 s")
        code, out, err = await follower
        assert code == 0, err
        shown = json.loads(out)
        assert shown["state"] == "complete" and shown["passed"] == 2  # the ghost failed
        assert {p["kind"] for p in shown["mes"]} == {"deviceScan", "pair", "notification"}

        async def delivered() -> bool:
            code, out, _ = await run_cli("scan", "show", "1", "--json", "--api", url)
            posts = json.loads(out)["mes"]
            return code == 0 and [p["state"] for p in posts] == ["delivered"] * 3

        await kit.eventually(delivered, timeout=30)
        code, out, err = await run_cli("scan", "show", "1", "--api", url)
        assert code == 0, err
        assert "posts to the MES" in out and "pair" in out and "delivered" in out


@pytest.mark.postgres
async def test_replicas_starting_at_once_start_one_scan(pg_url: str, kit: SimpleNamespace) -> None:
    """Without the advisory lock both would see no running scan and both would start one."""
    async with (
        kit.controller(pg_url, "memory://", "", quiet=600) as a,
        kit.controller(pg_url, "memory://", "", quiet=600) as b,
    ):
        for _ in range(5):
            outcomes = await asyncio.gather(
                a.scans.start(GHOST), b.scans.start(GHOST), return_exceptions=True
            )
            started = [o for o in outcomes if not isinstance(o, BaseException)]
            refused = [o for o in outcomes if isinstance(o, ScanRunningError)]
            assert len(started) == 1 and len(refused) == 1, outcomes
            assert refused[0].operationid == started[0].operationid
            await a.scans.finish(started[0].operationid, "test")
