"""``sync_folders``: keep one folder converged across the cluster's members with rsync over SSH.

Every member pushes its folder to every other member each ``interval`` seconds with
``rsync -a --update`` (a newer copy is never overwritten by an older one), so after a
round every member holds the union of the files, each at its newest version. Deletions
are not propagated (a deleted file comes back from a peer): documented in docs/mdp.md.
SSH uses this machine's cluster key and a known_hosts file, strictly
(``StrictHostKeyChecking=yes``, no password prompts).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shlex
import socket
import time
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)


def is_local(ip: str) -> bool:
    """True for an address of this machine (binding to it succeeds)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.bind((ip, 0))
        except OSError:
            return False
    return True


@dataclass(frozen=True, slots=True)
class SyncConfig:
    ssh_key: str
    known_hosts: str
    user: str = "root"
    interval: float = 30.0


class FolderSync:
    """One sync loop at a time; a new ``cluster_info`` replaces the previous one."""

    def __init__(self, config: SyncConfig | None) -> None:
        self.config = config
        self.last: dict[str, dict[str, Any]] = {}
        self.rounds = 0
        self._task: asyncio.Task[None] | None = None

    def describe(self) -> str:
        return "on" if self.config else "off: the agent has no cluster SSH key (docs/mdp.md)"

    async def configure(self, members: list[str], folder: str) -> list[str]:
        """Start syncing ``folder`` with the members that are not this machine."""
        await self.close()
        peers = [m for m in members if not is_local(m)]
        if self.config is not None and peers:
            self._task = asyncio.create_task(self._loop(peers, folder), name="mdp-sync")
        return peers

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    def command(self, peer: str, folder: str) -> list[str]:
        assert self.config is not None
        cfg = self.config
        options = ["BatchMode=yes", "IdentitiesOnly=yes", "StrictHostKeyChecking=yes",
                   f"UserKnownHostsFile={cfg.known_hosts}"]  # fmt: skip
        argv = ["ssh", "-i", cfg.ssh_key]
        for option in options:
            argv += ["-o", option]
        ssh = " ".join(shlex.quote(a) for a in argv)
        path = folder.rstrip("/") + "/"
        return ["rsync", "-a", "--update", "--timeout=60", "-e", ssh, path,
                f"{cfg.user}@{peer}:{path}"]  # fmt: skip

    async def push(self, peer: str, folder: str) -> dict[str, Any]:
        started = time.monotonic()
        proc = await asyncio.create_subprocess_exec(
            *self.command(peer, folder),
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            async with asyncio.timeout(300):
                _, err = await proc.communicate()
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
            return {"ok": False, "error": "rsync timed out"}
        result: dict[str, Any] = {"ok": proc.returncode == 0,
                                  "seconds": round(time.monotonic() - started, 2)}  # fmt: skip
        if proc.returncode:
            result["error"] = err.decode(errors="replace").strip()[-300:]
        return result

    async def _loop(self, peers: list[str], folder: str) -> None:
        while True:
            for peer in peers:
                self.last[peer] = await self.push(peer, folder)
                if not self.last[peer]["ok"]:
                    log.warning("sync of %s to %s failed: %s", folder, peer,
                                self.last[peer].get("error"))  # fmt: skip
            self.rounds += 1
            await asyncio.sleep(self.config.interval if self.config else 30.0)
