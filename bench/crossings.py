"""How many hwfleet packages a first enrollment and a burn-in scan pass through (issue 12).

The reader's measure of a layout: follow one operation and count the rooms it walks through.
This runs the real path in one process — controller (memory bus, SQLite), one simulated
device over the stream carrier on loopback, mes-sim — and records every call made by hwfleet
code while each operation runs (``sys.setprofile``):

* **first enrollment**: the device's first connect, enrollment and its first ping answered;
* **scan**: ``POST /api/v1/scans`` (what ``hwfleet scan`` sends) to the three MES posts.

It prints, per operation, the packages (``hwfleet.<pkg>[.<sub>]``) whose code ran and the
package-to-package edges crossed (distinct caller → callee pairs). The CLI process itself
adds ``hwfleet.cli`` and one edge to the API's HTTP surface.

    .venv/bin/python bench/crossings.py [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import Any

import httpx

from hwfleet.cli.demo_session import mes_records
from hwfleet.controller.app import Controller
from hwfleet.settings import ServerSettings
from hwfleet.sim.fleet import SimFleet
from hwfleet.sim.mes import MesSimulator, serve
from hwfleet.sim.profiles import generate

#: Packages that are scaffolding of this measurement, not of the path measured.
SCAFFOLD = ("hwfleet.sim", "hwfleet.cli")


def package_of(module: str) -> str | None:
    """``hwfleet.controller.scan.writer`` → ``hwfleet.controller.scan``; root → ``hwfleet``."""
    if not module.startswith("hwfleet"):
        return None
    parts = module.split(".")
    return ".".join(parts[: min(3, len(parts) - 1)]) or "hwfleet"


class Recorder:
    def __init__(self) -> None:
        self.packages: set[str] = set()
        self.edges: set[tuple[str, str]] = set()

    def __call__(self, frame: FrameType, event: str, _arg: Any) -> None:
        if event != "call":
            return
        callee = package_of(frame.f_globals.get("__name__", ""))
        if callee is None:
            return
        self.packages.add(callee)
        caller_frame = frame.f_back
        while caller_frame is not None:
            caller = package_of(caller_frame.f_globals.get("__name__", ""))
            if caller is not None:
                if caller != callee:
                    self.edges.add((caller, callee))
                return
            caller_frame = caller_frame.f_back

    def summary(self) -> dict[str, Any]:
        packages = sorted(p for p in self.packages if not p.startswith(SCAFFOLD))
        edges = sorted(
            (a, b)
            for a, b in self.edges
            if not a.startswith(SCAFFOLD) and not b.startswith(SCAFFOLD)
        )
        return {"packages": packages, "edges": [f"{a} -> {b}" for a, b in edges]}


@contextmanager
def recording() -> Iterator[Recorder]:
    recorder = Recorder()
    sys.setprofile(recorder)
    try:
        yield recorder
    finally:
        sys.setprofile(None)


async def measure() -> dict[str, Any]:
    profile = generate(1, 7)
    password = secrets.token_urlsafe(16)
    mes_sim = MesSimulator.from_profile(mes_records(profile))
    with tempfile.TemporaryDirectory(prefix="hwfleet-crossings-") as data_dir:
        async with serve(mes_sim) as mes:
            settings = ServerSettings(
                data_dir=data_dir,
                agent_listen="127.0.0.1:0",
                api_listen="127.0.0.1:0",
                bus="memory://",
                mes=mes,
                scan_quiet_timeout=5.0,
                enroll_password=password,
                log_level="warning",
            )
            controller = Controller(settings)
            await controller.start()
            host, port = controller.gateway.address
            fleet = SimFleet(
                profile,
                host,
                port,
                seed=7,
                heartbeat=5.0,
                data_dir=str(Path(data_dir) / "sim"),
                enroll_password=password,
                controller_fingerprint=controller.admission.ca.fingerprint(),
            )
            try:
                with recording() as enrollment:
                    await fleet.start()
                    if await fleet.wait_connected(timeout=30) != 1:
                        raise SystemExit("the simulated device did not connect within 30 s")
                    pings = await controller.devices.ping_many(controller.devices.online())
                    if not all(p["ok"] for p in pings.values()):
                        raise SystemExit("the first ping was not answered")
                headers = {"Authorization": f"Bearer {controller.operator_token}"}
                async with httpx.AsyncClient(base_url=controller.api_url, headers=headers) as api:
                    with recording() as scan:
                        reply = await api.post("/api/v1/scans", json={})
                        reply.raise_for_status()
                        deadline = time.monotonic() + 30
                        # mes-sim appends to a list and signals nothing: poll it, bounded.
                        while len(mes_sim.posts) < 3 and time.monotonic() < deadline:  # noqa: ASYNC110
                            await asyncio.sleep(0.02)
                        if len(mes_sim.posts) < 3:
                            raise SystemExit("the MES did not receive the scan's three posts")
            finally:
                await fleet.close()
                await controller.close()
    return {"first_enrollment": enrollment.summary(), "scan": scan.summary()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print the full lists as JSON")
    args = parser.parse_args()
    result = asyncio.run(measure())
    if args.json:
        print(json.dumps(result, indent=2))
        return
    for name, figures in result.items():
        print(
            f"{name}: {len(figures['packages'])} packages, "
            f"{len(figures['edges'])} package-to-package edges crossed"
        )
        for package in figures["packages"]:
            print(f"    {package}")


if __name__ == "__main__":
    main()
