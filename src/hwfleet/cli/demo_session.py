"""The embedded demo's session: a real controller, real sockets, simulated devices on loopback.

It composes the controller, the simulator and mes-sim, so it lives at the top
(cli), not in sim: sim imports nothing from cli or controller.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import socket
import tempfile
import time
from pathlib import Path
from typing import Any

import msgspec
from rich.console import Console

from hwfleet.cli.output import table
from hwfleet.controller.app import Controller
from hwfleet.settings import ServerSettings
from hwfleet.sim.fleet import SimFleet
from hwfleet.sim.mes import MesSimulator, serve
from hwfleet.sim.profiles import Profile, generate


def _free(listen: str) -> str:
    """Use the requested API address, or any free port when it is taken."""
    host, _, port = listen.rpartition(":")
    with socket.socket() as probe:
        try:
            probe.bind((host, int(port)))
        except OSError:
            return f"{host}:0"
    return listen


class Demo:
    def __init__(self, *, devices: int, seed: int, data_dir: str | None, api_listen: str) -> None:
        self.count = devices
        self.seed = seed
        self.data_dir = data_dir
        self.api_listen = api_listen
        self.exit_code = 0
        self.console = Console(emoji=False)  # device names are printed as they are
        # The demo's devices enroll with a password made for this run (never printed).
        self.password = secrets.token_urlsafe(16)
        self.mes_sim: MesSimulator

    async def run(self, stop: asyncio.Event, *, once: bool) -> None:
        profile = generate(self.count, self.seed)
        with contextlib.ExitStack() as stack:
            data_dir = self.data_dir or stack.enter_context(
                tempfile.TemporaryDirectory(prefix="hwfleet-demo-")
            )
            self.mes_sim = MesSimulator.from_profile(mes_records(profile))
            async with serve(self.mes_sim) as mes:
                await self._run(profile, data_dir, mes, stop, once)

    async def _run(
        self, profile: Profile, data_dir: str, mes: str, stop: asyncio.Event, once: bool
    ) -> None:
        out = self.console
        settings = ServerSettings(
            data_dir=data_dir,
            agent_listen="127.0.0.1:0",
            api_listen=_free(self.api_listen),
            bus="memory://",
            mes=mes,
            scan_quiet_timeout=5.0,
            enroll_password=self.password,
            log_level="warning",
        )
        controller = Controller(settings)
        started = time.perf_counter()
        await controller.start()
        fleet: SimFleet | None = None
        try:
            host, port = controller.gateway.address
            out.print(
                f"[bold]hwfleet demo[/bold]: controller on {host}:{port}, API {controller.api_url}"
            )
            fleet = SimFleet(
                profile,
                host,
                port,
                seed=self.seed,
                heartbeat=5.0,
                data_dir=str(Path(data_dir) / "sim"),
                enroll_password=self.password,
                controller_fingerprint=controller.admission.ca.fingerprint(),
            )
            await fleet.start()
            connected = await fleet.wait_connected(timeout=30)
            out.print(
                f"{connected}/{self.count} simulated devices connected "
                f"in {time.perf_counter() - started:.2f} s"
            )
            pings = await controller.devices.ping_many(controller.devices.online())
            self._summary(await self._devices(controller), pings)
            if connected < self.count or not all(p["ok"] for p in pings.values()):
                self.exit_code = 1
            if not await self._scan(controller):
                self.exit_code = 1
            out.print(f"\nMES simulator: {mes}/_received shows what the controller posted")
            out.print(f"API: {controller.api_url}/docs  (token: {data_dir}/operator.token)")
            if not once:
                out.print(
                    "Try: HWFLEET_API="
                    + controller.api_url
                    + f" HWFLEET_DATA_DIR={data_dir} hwfleet devices   — Ctrl-C to stop"
                )
                await stop.wait()
        finally:
            if fleet is not None:
                await fleet.close()
            await controller.close()

    async def _scan(self, controller: Controller) -> bool:
        """Run one burn-in scan against the MES simulator and show its table."""
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

        from hwfleet.cli.scan import _table

        scan = await controller.scans.start()
        op = scan.operationid
        deadline = time.monotonic() + 60
        with Progress(
            TextColumn(f"[bold]scan {op}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("devices answered"),
            console=self.console,
            transient=True,
        ) as progress:
            bar = progress.add_task("scan", total=len(scan.expected))
            while scan.state == "running" and time.monotonic() < deadline:
                await asyncio.sleep(0.1)  # the display's refresh period, not synchronisation
                async with controller.store.tx(readonly=True) as tx:
                    answered = len(await tx.scans.answered(op))
                    scan = await tx.scans.get(op) or scan
                progress.update(bar, completed=answered)
        if scan.state == "running":
            self.console.print(f"[red]scan {op} did not finish within 60 s[/red]")
            return False
        self.console.print(_table({"operationid": op, "document": scan.document}))
        entries = (scan.document or {}).get("scaninfo", [])
        return len(entries) == self.count and scan.state == "complete" and await self._posted()

    async def _posted(self) -> bool:
        """Wait (bounded) for the outbox to deliver the scan's three posts to the MES."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(30):
                # The MES app appends to a plain list and signals nothing: poll it, bounded.
                while len(self.mes_sim.posts) < 3:  # noqa: ASYNC110
                    await asyncio.sleep(0.05)
        paths = {post["path"]: post["body"] for post in self.mes_sim.posts}
        pair = paths.get("/operations/pair", {}).get("snArray", [])
        note = paths.get("/notifications/devicescan", {}).get("status", "")
        if len(paths) < 3:
            self.console.print(f"[red]the MES received {len(paths)} of 3 posts[/red]")
            return False
        self.console.print(
            f"MES received deviceScan, Pair ({len(pair)} serials) and the notification "
            f"[italic]{note!r}[/italic]"
        )
        return True

    @staticmethod
    async def _devices(controller: Controller) -> list[Any]:
        async with controller.store.tx() as tx:
            return list(await tx.devices.list())

    def _summary(self, devices: list[Any], pings: dict[str, dict[str, Any]]) -> None:
        cells = [
            (
                d.name,
                d.serial,
                d.model_id,
                d.ipaddr,
                d.state,
                f"{pings[d.uuid]['rtt_ms']:.2f} ms"
                if pings.get(d.uuid, {}).get("ok")
                else "no reply",
            )
            for d in devices
        ]
        columns = ("name", "serial", "model", "ipaddr", "state", "ping")
        self.console.print(table("devices", columns, cells))


def mes_records(profile: Profile) -> dict[str, Any]:
    """The simulator's records: every device as built, except that the MES has one MAC of the
    last device wrong — so the demo shows a failing unit next to the passing ones."""
    raw: dict[str, Any] = msgspec.to_builtins(profile)
    devices = raw["devices"]
    last = devices[-1]
    if len(devices) > 1 and last.get("interfaces"):
        nic = last["interfaces"][-1]
        wrong = "02:ff:ff:" + nic["mac"][9:]
        rows = [
            {
                "serialNo": str(last["sn"]),
                "macInfo": [
                    {"interface": n["name"], "macaddr": wrong if n is nic else n["mac"]}
                    for n in last["interfaces"]
                ],
            }
        ]
        raw["mes"] = {"records": {str(last["sn"]): rows}}
    return raw
