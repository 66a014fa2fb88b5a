"""The scans router over HTTP, and the `hwfleet scan` / `hwfleet mes-sim` commands as processes."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
from fastapi import FastAPI

from hwfleet.api.deps import provide
from hwfleet.api.scans import router
from hwfleet.api.services.scans import ScansService
from hwfleet.sim.mes import bind_socket

TOKEN = "t0ken-for-tests"
HWFLEET = [sys.executable, "-m", "hwfleet.cli"]


def devices(kit: SimpleNamespace) -> list[Any]:
    return [
        kit.SimDevice("u-1", 1001, [("eth0", "00:00:00:00:00:01")]),
        kit.SimDevice("u-2", "SN-2", [("eth0", "00:00:00:00:00:02")]),
        kit.SimDevice("u-3", 1003, [("eth0", "00:00:00:00:00:03")]),
    ]


@asynccontextmanager
async def api(
    tmp_path: Path, mes_sim: Any, kit: SimpleNamespace
) -> AsyncIterator[tuple[str, Any, str]]:
    """The scan half of a controller, its API on a real port, three devices; 1003 unregistered."""
    import uvicorn

    fleet_devices = devices(kit)
    async with mes_sim(kit.profile_for(fleet_devices, {"unregistered": [1003]})) as (_, base):
        db = f"sqlite+aiosqlite:///{tmp_path / 'hw.db'}"
        async with kit.controller(db, "memory://", base, quiet=5.0) as ctl:
            fleet = kit.SimFleet(ctl.bus, fleet_devices)
            await fleet.start()
            await fleet.register(ctl.store)
            app = FastAPI()
            provide(app, ScansService(ctl.store, ctl.scans))
            app.state.operator_token = TOKEN
            app.include_router(router)
            sock = bind_socket("127.0.0.1", 0)
            server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
            task = asyncio.create_task(server.serve(sockets=[sock]))
            try:
                yield f"http://127.0.0.1:{sock.getsockname()[1]}", ctl, base
            finally:
                server.should_exit = True
                await task
                sock.close()


async def test_router_start_get_list_outbox(
    tmp_path: Path, mes_sim: Any, kit: SimpleNamespace
) -> None:
    async with api(tmp_path, mes_sim, kit) as (url, ctl, _):
        headers = {"Authorization": f"Bearer {TOKEN}"}
        async with httpx.AsyncClient(base_url=url, headers=headers) as http:
            assert (
                await http.post("/api/v1/scans", headers={"Authorization": "Bearer no"})
            ).status_code == 401
            bad = await http.post("/api/v1/scans", json={"quiet_timeout": -1})
            assert bad.status_code == 422
            missing = await http.post("/api/v1/scans", json={"devices": ["nope"]})
            assert missing.status_code == 404 and "no device nope" in missing.json()["detail"]
            finished = await kit.finished_events(ctl.bus)
            started = await http.post("/api/v1/scans", json={})
            assert started.status_code == 202 and started.json() == {"operationid": 1}
            async with asyncio.timeout(10):
                await finished.get()
            scan = (await http.get("/api/v1/scans/1")).json()
            assert scan["state"] == "complete" and scan["expected"] == 3 and scan["answered"] == 3
            assert scan["passed"] == 2
            assert scan["document"]["operationid"] == 1
            assert {r["uuid"] for r in scan["results"]} == {"u-1", "u-2", "u-3"}
            assert (
                "results"
                not in (await http.get("/api/v1/scans/1", params={"results": "false"})).json()
            )
            assert (await http.get("/api/v1/scans/2")).status_code == 404
            listed = (await http.get("/api/v1/scans")).json()
            assert [s["operationid"] for s in listed] == [1]

            async def outbox_done() -> bool:
                rows = (await http.get("/api/v1/outbox")).json()
                return len(rows) == 3 and all(r["state"] == "delivered" for r in rows)

            await kit.eventually(outbox_done)
            kinds = {
                r["kind"]
                for r in (await http.get("/api/v1/outbox", params={"state": "delivered"})).json()
            }
            assert kinds == {"deviceScan", "pair", "notification"}
            assert (await http.get("/api/v1/outbox", params={"state": "bogus"})).status_code == 422


async def run_cli(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        *HWFLEET,
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "HWFLEET_TOKEN": TOKEN, "COLUMNS": "200", **(env or {})},
    )
    async with asyncio.timeout(60):
        out, err = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_cli_scan_json_prints_exactly_the_document(
    tmp_path: Path, mes_sim: Any, kit: SimpleNamespace
) -> None:
    async with api(tmp_path, mes_sim, kit) as (url, _, _):
        code, out, err = await run_cli("scan", "--json", "--timeout", "2", "--api", url)
        assert code == 0, err
        document = json.loads(out)  # exactly one JSON document, nothing else
        assert list(document) == ["operationid", "pairInfo", "scaninfo"]
        results = {e["sn"]: e["result"] for e in document["scaninfo"]}
        assert results == {1001: "1", "SN-2": "1", 1003: "0"}

        code, out, err = await run_cli("scan", "--wait", "--api", url)
        assert code == 0, err
        assert "scan 2: 2 of 3 devices passed" in out
        assert "not registered" in out and "SN-2" in out

        code, out, _ = await run_cli("scan", "--api", url)
        assert code == 0 and "scan 3 started" in out


async def test_cli_scan_reports_an_unreachable_controller() -> None:
    sock = bind_socket("127.0.0.1", 0)
    port = sock.getsockname()[1]
    sock.close()
    code, out, err = await run_cli("scan", "--json", "--api", f"http://127.0.0.1:{port}")
    assert code == 1 and out == ""
    assert "refused the connection" in err


async def test_mes_sim_command_serves_the_profile(tmp_path: Path) -> None:
    profile = tmp_path / "profile.json"
    profile.write_text(
        json.dumps(
            {"devices": [{"sn": 77, "interfaces": [{"name": "eth0", "mac": "00:00:00:00:00:77"}]}]}
        )
    )
    sock = bind_socket("127.0.0.1", 0)
    port = sock.getsockname()[1]
    sock.close()
    proc = await asyncio.create_subprocess_exec(
        *HWFLEET,
        "mes-sim",
        "--listen",
        f"127.0.0.1:{port}",
        "--profile",
        str(profile),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        async with asyncio.timeout(30):
            line = (await proc.stdout.readline()).decode()
        assert f"listening on http://127.0.0.1:{port}" in line
        async with httpx.AsyncClient() as http:
            got = await http.get(
                f"http://127.0.0.1:{port}/deviceInfo/getById", params={"serialno": "77"}
            )
        assert got.json() == {
            "info": [
                {
                    "serialNo": "77",
                    "macInfo": [{"interface": "eth0", "macaddr": "00:00:00:00:00:77"}],
                }
            ]
        }
    finally:
        proc.terminate()
        async with asyncio.timeout(10):
            await proc.wait()


async def test_mes_sim_command_rejects_a_bad_profile(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    code, _, err = await run_cli("mes-sim", "--listen", "127.0.0.1:1", "--profile", str(bad))
    assert code == 1
    assert f"{bad}: $: not valid JSON" in err  # the same loader (and words) as `hwfleet sim`
