"""End to end on loopback: simulated devices enroll, the controller takes custody of their
diagnostics keys (``.known_machines/<ip>.txt``), and a client written only with the standard
library — plus ``hwfleet mdp`` — talk to them; reports reach ``hwfleet mdp status``."""

from __future__ import annotations

import asyncio
import json
import os
import stat
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
from tests.integration.mdp.sim_site import PORT, sim_site

from hwfleet.controller.app import Controller
from hwfleet.mdp.reports import Reporter
from hwfleet.sim.fleet import SimFleet

OUTSIDE = str(Path(__file__).with_name("outside_client.py"))


async def run(
    *argv: str, timeout: float, env: dict[str, str] | None = None
) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        *argv,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), **(env or {})},
    )
    async with asyncio.timeout(timeout):
        out, err = await proc.communicate()
    return proc.returncode or 0, out.decode(), err.decode()


async def hwfleet(*args: str, timeout: float, env: dict[str, str] | None = None) -> Any:
    code, out, err = await run(sys.executable, "-m", "hwfleet", *args, timeout=timeout, env=env)
    assert code == 0, err
    return json.loads(out)


@pytest.fixture
async def site(tmp_path: Path, deadline: float) -> AsyncIterator[tuple[Controller, SimFleet]]:
    async with sim_site(tmp_path, deadline) as (ctl, fleet):
        known = ctl.mdp_keys.known
        async with asyncio.timeout(deadline):
            while not all(known.get(d.address) for d in fleet.devices):
                await ctl.mdp_keys.recorded.wait()
                ctl.mdp_keys.recorded.clear()
        yield ctl, fleet


async def test_controller_mirrors_each_key_privately(
    site: tuple[Controller, SimFleet], tmp_path: Path
) -> None:
    ctl, fleet = site
    root = ctl.mdp_keys.known.root
    assert root == tmp_path / "ctl" / ".known_machines"
    assert stat.S_IMODE(root.stat().st_mode) == 0o700
    for device in fleet.devices:
        mirrored = root / f"{device.address}.txt"
        own = tmp_path / "sim" / device.runtime.info.uuid / "mdp.key"
        assert stat.S_IMODE(mirrored.stat().st_mode) == 0o600
        assert stat.S_IMODE(own.stat().st_mode) == 0o600
        assert mirrored.read_text() == own.read_text()
    keys = {(root / f"{d.address}.txt").read_text() for d in fleet.devices}
    assert len(keys) == 2  # one key per machine


async def test_outside_client_speaks_design_13(
    site: tuple[Controller, SimFleet], tmp_path: Path, deadline: float
) -> None:
    ctl, fleet = site
    device = fleet.devices[1]
    code, out, err = await run(
        sys.executable,
        OUTSIDE,
        device.address,
        str(PORT),
        str(ctl.mdp_keys.known.root),
        timeout=deadline * 3,
    )
    assert code == 0, err
    found = json.loads(out)
    assert found["good_status"] and found["good_authentic"]
    assert not found["reply_has_key"]
    assert {"load_and_memory", "disk_health", "inventory"} <= set(found["methods"])
    for attack in ("wrong_key", "replay", "stale", "malformed", "oversized", "legacy"):
        assert found[f"{attack}_silent"], attack
    counters = device.mdp.counters if device.mdp else {}
    for reason in ("bad_key", "replay", "stale", "malformed", "oversized", "legacy_refused"):
        assert counters[reason] == 1, reason
    # The same figures as the endpoint_stats operation reported to the client.
    assert found["counters"]["bad_key"] == 1


async def test_cli_call_methods_and_status(
    site: tuple[Controller, SimFleet], tmp_path: Path, deadline: float
) -> None:
    ctl, fleet = site
    data = str(tmp_path / "ctl")
    device = fleet.devices[0]
    addr = device.address
    reply = await hwfleet("mdp", "call", addr, "inventory", "--data-dir", data, "--json",
                          timeout=deadline * 3)  # fmt: skip
    assert reply["status"] is True
    # A simulated device reports exactly its profile.
    own = msgspec.to_builtins(await device.runtime.inventory())
    assert reply["operations"][0]["result"] == own
    helps = await hwfleet("mdp", "methods", addr, "--data-dir", data, "--json",
                          timeout=deadline * 3)  # fmt: skip
    assert "smartctl" in helps["disk_health"]
    code, _, err = await run(
        sys.executable, "-m", "hwfleet", "mdp", "call", addr, "log_tail",
        "--arg", "lines=1000", "--data-dir", data, timeout=deadline * 3,
    )  # fmt: skip
    assert code == 1 and "lines must be an integer from 1 to 200" in err
    code, _, err = await run(
        sys.executable, "-m", "hwfleet", "mdp", "call", "127.0.0.9", "inventory",
        "--data-dir", data, timeout=deadline * 3,
    )  # fmt: skip
    assert code == 1 and "no key for 127.0.0.9" in err

    # Reports: the device sends, the controller keeps the latest, status shows it.
    assert device.mdp is not None
    collector = ctl.mdp_reports
    reporter = Reporter(device.mdp, f"127.0.0.1:{collector.port}", 60.0,
                        ("load_and_memory", "disk_health"))  # fmt: skip
    collector.updated.clear()
    assert await reporter.report_once() == 1
    async with asyncio.timeout(deadline):
        await collector.updated.wait()
    reports = await hwfleet("mdp", "status", "--data-dir", data, "--json", timeout=deadline * 3)
    [report] = reports
    assert report["ip"] == addr and report["machine"] == device.runtime.info.uuid
    assert report["operations"]["load_and_memory"]["result"]["cpus"] >= 1
    # The same document through the REST API, and through the CLI when HWFLEET_API is set.
    import httpx

    bearer = {"Authorization": f"Bearer {ctl.operator_token}"}
    async with httpx.AsyncClient(base_url=ctl.api_url, headers=bearer) as http:
        got = await http.get("/api/v1/mdp/status", params={"ip": addr})
        assert got.status_code == 200 and got.json() == reports
        assert got.headers["X-Mdp-Collecting"] == "yes"
        assert (await http.get("/api/v1/mdp/status", params={"ip": "127.0.0.250"})).json() == []
        assert (await http.get("/api/v1/mdp/status", params={"ip": "x"})).status_code == 422
        anonymous = await http.get("/api/v1/mdp/status", headers={"Authorization": ""})
        assert anonymous.status_code == 401
    # --data-dir names a directory with no reports: only the API can answer.
    empty = str(tmp_path / "empty")
    via_api = await hwfleet("mdp", "status", "--data-dir", empty, "--json", timeout=deadline * 3,
                            env={"HWFLEET_API": ctl.api_url,
                                 "HWFLEET_TOKEN": ctl.operator_token})  # fmt: skip
    assert via_api == reports
    # A report from a machine the controller holds no key for is dropped and counted.
    stranger = Reporter(fleet.devices[1].mdp, f"127.0.0.1:{collector.port}", 60.0, ())  # type: ignore[arg-type]
    stranger.endpoint.key = b"\x01" * 32
    collector.activity.clear()
    await stranger.report_once()
    async with asyncio.timeout(deadline):
        await collector.activity.wait()
    assert collector.counters["bad_key"] == 1
