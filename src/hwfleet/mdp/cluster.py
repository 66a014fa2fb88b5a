"""Cluster mode (seed 002): membership and the ``sync_folders`` performance score.

A request's ``cluster_info`` names the members and the modes; this machine records
them (in its operation context's state) and answers ``machine_mode`` with its
performance for each mode, 1 (poor) to 9 (best):

    spare_cpu  = clamp(1 - load1 / cpus)                   (0..1)
    disk       = clamp(write MB/s of a 4 MiB fsync'd file in the folder / 200)
    free       = clamp(free bytes / size of the folder's filesystem)
    performance = 1 + round(8 * (0.4 * spare_cpu + 0.3 * disk + 0.3 * free))

The folder must be an absolute path to an existing directory.
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import time
from pathlib import Path
from typing import Any

from hwfleet.mdp.operations import OperationContext
from hwfleet.mdp.sync import FolderSync
from hwfleet.mdp.tombstones import PROBE_PREFIX

MODES = ("sync_folders",)
PROBE_BYTES = 4 * 1024 * 1024
#: Write speed (MB/s) that counts as a perfect disk.
DISK_FULL_MARKS = 200.0
MAX_MEMBERS = 64


def _clamp(value: float) -> float:
    return min(1.0, max(0.0, value))


def measure(folder: Path) -> dict[str, float]:
    """The three measured inputs of the score, for ``folder``."""
    cpus = os.cpu_count() or 1
    spare = _clamp(1 - os.getloadavg()[0] / cpus)
    probe = folder / f"{PROBE_PREFIX}{os.getpid()}"
    block = os.urandom(PROBE_BYTES)
    started = time.perf_counter()
    try:
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, block)
            os.fsync(fd)
        finally:
            os.close(fd)
    finally:
        probe.unlink(missing_ok=True)
    mbps = PROBE_BYTES / 1e6 / max(time.perf_counter() - started, 1e-6)
    st = os.statvfs(folder)
    free = _clamp(st.f_bavail / st.f_blocks) if st.f_blocks else 0.0
    return {"spare_cpu": round(spare, 3), "disk_mbps": round(mbps, 1), "free": round(free, 3)}


def performance(inputs: dict[str, float]) -> int:
    disk = _clamp(inputs["disk_mbps"] / DISK_FULL_MARKS)
    score = 0.4 * inputs["spare_cpu"] + 0.3 * disk + 0.3 * inputs["free"]
    return 1 + round(8 * score)


def _members(value: Any) -> list[str]:
    if not isinstance(value, list) or len(value) > MAX_MEMBERS:
        raise ValueError(f"cluster_machines must be a list of at most {MAX_MEMBERS} addresses")
    try:
        return [str(ipaddress.ip_address(str(m))) for m in value]
    except ValueError:
        raise ValueError("cluster_machines must hold IP addresses") from None


def _modes(value: Any) -> list[dict[str, str]]:
    if not isinstance(value, list):
        raise ValueError("cluster_mode must be a list")
    modes = []
    for mode in value:
        if not isinstance(mode, dict) or mode.get("name") not in MODES:
            raise ValueError(f"cluster_mode entries need a name from {', '.join(MODES)}")
        folder = mode.get("folder")
        if not isinstance(folder, str) or not os.path.isabs(folder):
            raise ValueError("sync_folders needs an absolute folder")
        if not Path(folder).is_dir():
            raise ValueError(f"folder {folder} does not exist on this machine")
        modes.append({"name": mode["name"], "folder": os.path.normpath(folder)})
    return modes


class ClusterMember:
    """Answers ``cluster_info``; the sync itself runs in :mod:`hwfleet.mdp.sync`."""

    def __init__(self, context: OperationContext, sync: FolderSync | None = None) -> None:
        self.context = context
        self.sync = sync or FolderSync(None)
        context.state["sync"] = self.sync

    async def handle(self, info: dict[str, Any], sender: str) -> dict[str, Any]:
        members = _members(info.get("cluster_machines", []))
        modes = _modes(info.get("cluster_mode", []))
        self.context.state["cluster"] = {"machines": members, "modes": modes, "by": sender}
        config = self.sync.config
        if config is not None:  # machines no longer members lose their access here
            from hwfleet.mdp.trust import forget_others

            await asyncio.to_thread(
                forget_others, config.authorized_keys, config.known_hosts, members
            )
        answer = []
        peers = await self.sync.configure(members, modes[0]["folder"]) if modes else []
        for mode in modes:
            inputs = await asyncio.to_thread(measure, Path(mode["folder"]))
            answer.append(
                {"name": mode["name"], "performance": performance(inputs), "measured": inputs}
            )
        return {
            "cluster_machines": members,
            "machine_mode": answer,
            "sync": {"state": self.sync.describe(), "peers": peers},
        }
