"""The machine's inventory and the health of its disks."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import msgspec

from hwfleet.mdp.operations import OperationContext, OperationError


async def inventory(ctx: OperationContext) -> dict[str, Any]:
    """Hardware inventory: host name, CPU, memory, disks, NICs and PCI devices (a simulated
    device reports its profile)."""
    if ctx.runtime is None:
        raise OperationError("no hardware managers in this process")
    built: dict[str, Any] = msgspec.to_builtins(await ctx.runtime.inventory())
    return built


def _disks() -> list[str]:
    """Whole disks from sysfs (no partitions, loop, ram or device-mapper devices)."""
    names = []
    for entry in sorted(Path("/sys/block").iterdir()):
        if entry.name.startswith(("loop", "ram", "dm-", "zram", "sr")):
            continue
        names.append(f"/dev/{entry.name}")
    return names


def disk_health(ctx: OperationContext, device: str = "") -> dict[str, Any]:
    """SMART overall health of every disk (or DEVICE, e.g. /dev/sda) via smartctl when it is
    installed; says so when it is not (and on a simulated device, which has no SMART data)."""
    if ctx.simulated:
        return {"available": False, "reason": "simulated device: no SMART data", "disks": []}
    # Imported here: shutil brings bz2, lzma and zlib, which an idle agent need not carry.
    import shutil

    smartctl = shutil.which("smartctl")
    if smartctl is None:
        return {"available": False, "reason": "smartctl is not installed", "disks": []}
    if device and (not device.startswith("/dev/") or ".." in device):
        raise OperationError("device must be a /dev/ path")
    out = []
    for disk in [device] if device else _disks():
        done = subprocess.run(
            [smartctl, "-H", "-j", disk], capture_output=True, text=True, timeout=15, check=False
        )
        entry: dict[str, Any] = {"device": disk, "exit_status": done.returncode}
        try:
            report = json.loads(done.stdout)
        except ValueError:
            report = {}
        status = report.get("smart_status", {})
        if "passed" in status:
            entry["passed"] = bool(status["passed"])
        messages = report.get("smartctl", {}).get("messages", [])
        if messages:
            entry["messages"] = [str(m.get("string", ""))[:200] for m in messages][:3]
        out.append(entry)
    return {"available": True, "disks": out}
