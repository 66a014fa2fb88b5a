"""Running network plans and reading the live state, on a real device only.

Nothing here guesses an interface: every function takes the name the operator
gave, and :func:`check_real_interface` makes sure it exists before anything
runs. Tests exercise this module only inside network namespaces they create
(``ip netns exec``), never on the machine's own interfaces.
"""

from __future__ import annotations

import asyncio
import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hwfleet.agent.netconfig.model import NetConfigError, NetworkSettings
from hwfleet.agent.netconfig.plans import DHCP_CLIENTS, Plan, iproute2_plan, nmcli_plan
from hwfleet.agent.netconfig.wifi import iw_scan_argv, nmcli_scan_argv, parse_iw, parse_nmcli
from hwfleet.errors import DeviceError
from hwfleet.trust.files import write_private

SYS_NET = Path("/sys/class/net")
COMMAND_TIMEOUT = 60.0


class ApplyError(DeviceError, RuntimeError):
    """A command of the plan failed; the message names it and quotes its stderr."""


Which = Callable[[str], str | None]


def check_real_interface(name: str, *, wifi: bool = False, sys_net: Path = SYS_NET) -> None:
    if not (sys_net / name).exists():
        raise NetConfigError("interface", f"{name} does not exist on this device")
    radio = (sys_net / name / "wireless").exists() or (sys_net / name / "phy80211").exists()
    if wifi and not radio:
        raise NetConfigError("interface", f"{name} is not a Wi-Fi interface")


async def run(argv: list[str], timeout: float = COMMAND_TIMEOUT) -> str:
    """Run one command (never through a shell); its stdout, or :class:`ApplyError`."""
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
    except OSError as exc:
        raise ApplyError(f"{argv[0]}: cannot run it ({exc.strerror or exc})") from None
    try:
        async with asyncio.timeout(timeout):
            out, err = await proc.communicate()
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise ApplyError(f"{' '.join(argv[:4])}: no answer within {timeout:g} s") from None
    if proc.returncode != 0:
        detail = err.decode(errors="replace").strip()[:400] or f"exit status {proc.returncode}"
        raise ApplyError(f"{' '.join(argv)}: {detail}")
    return out.decode(errors="replace")


async def networkmanager_running(which: Which = shutil.which) -> bool:
    if which("nmcli") is None:
        return False
    try:
        return (await run(["nmcli", "-t", "-f", "RUNNING", "general"], 10)).strip() == "running"
    except ApplyError:
        return False


async def build_plan(
    settings: NetworkSettings,
    interface: str,
    backend: str | None = None,
    which: Which = shutil.which,
) -> Plan:
    """The plan for this device: NetworkManager when it runs, else iproute2."""
    if backend is None:
        backend = "nmcli" if await networkmanager_running(which) else "iproute2"
    if backend == "nmcli":
        return nmcli_plan(settings, interface)
    if backend != "iproute2":
        raise NetConfigError("backend", f"{backend!r} is not nmcli or iproute2")
    client = next((name for name in DHCP_CLIENTS if which(name)), None)
    return iproute2_plan(settings, interface, client)


async def execute(plan: Plan) -> dict[str, Any]:
    """Write the plan's files, run its commands in order, stop at the first failure."""
    for planned in plan.files:
        path = Path(planned.path)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_private(path, planned.content.encode())
    for argv in plan.commands:
        await run(argv)
    return {"backend": plan.backend, "commands": len(plan.commands), "warnings": plan.warnings}


async def apply(
    settings: NetworkSettings, backend: str | None = None, sys_net: Path = SYS_NET
) -> dict[str, Any]:
    """Validate the interface, plan, and execute: the whole real ``device.network.set``."""
    if settings.interface is None:
        raise NetConfigError("interface", "is required on a real device (name it explicitly)")
    check_real_interface(settings.interface, wifi=settings.wifi, sys_net=sys_net)
    return await execute(await build_plan(settings, settings.interface, backend))


def parse_ip_addr(doc: list[dict[str, Any]]) -> dict[str, Any]:
    """``ip -j -4 addr show dev IF`` → method, ipaddr, mask of the first global address."""
    for link in doc:
        for info in link.get("addr_info", []):
            if info.get("family") == "inet" and info.get("scope", "global") == "global":
                return {
                    "method": "dhcp" if info.get("dynamic") else "static",
                    "ipaddr": info.get("local"),
                    "mask": info.get("prefixlen"),
                }
    return {}


def parse_ip_route(doc: list[dict[str, Any]]) -> str | None:
    for route in doc:
        if route.get("dst") == "default" and route.get("gateway"):
            return str(route["gateway"])
    return None


def parse_resolv_conf(text: str) -> list[str]:
    return [
        parts[1]
        for parts in (line.split() for line in text.splitlines())
        if len(parts) >= 2 and parts[0] == "nameserver"
    ]


async def read_live(interface: str, sys_net: Path = SYS_NET) -> dict[str, Any]:
    """What the interface has now, from iproute2 (read-only) and /etc/resolv.conf."""
    check_real_interface(interface, sys_net=sys_net)
    addr = json.loads(await run(["ip", "-j", "-4", "addr", "show", "dev", interface]) or "[]")
    routes = json.loads(await run(["ip", "-j", "-4", "route", "show", "default"]) or "[]")
    live: dict[str, Any] = {"interface": interface, **parse_ip_addr(addr)}
    gateway = parse_ip_route([r for r in routes if r.get("dev") == interface])
    if gateway:
        live["route"] = gateway
    live["ns"] = await asyncio.to_thread(read_name_servers)
    return live


def read_name_servers(path: Path = Path("/etc/resolv.conf")) -> list[str]:
    try:
        return parse_resolv_conf(path.read_text(encoding="utf-8"))
    except OSError:
        return []


async def scan_wifi(interface: str | None, which: Which = shutil.which) -> list[dict[str, Any]]:
    """Visible networks through nmcli, else ``iw`` (which needs the interface)."""
    if interface is not None:
        check_real_interface(interface, wifi=True)
    if await networkmanager_running(which):
        return parse_nmcli(await run(nmcli_scan_argv(interface)))
    if which("iw") is not None:
        if interface is None:
            raise NetConfigError("interface", "is required to scan with iw (name the Wi-Fi one)")
        return parse_iw(await run(iw_scan_argv(interface)))
    raise ApplyError("no Wi-Fi tooling on this device: install NetworkManager (nmcli) or iw")
