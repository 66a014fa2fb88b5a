"""``sync_folders``: keep one folder converged across the cluster's members with rsync over SSH.

Every ``interval`` seconds each member pulls the folder from every other member with
``rsync -a --update`` (a newer copy is never overwritten by an older one), so after a
round every member holds the union of the files, each at its newest version. Deletions
travel as tombstones (:mod:`hwfleet.mdp.tombstones`). Members pull rather than push so
that a member's folder changes only in its own round or by its own users (what makes
deletions detectable) and so that each peer needs only read access here (rrsync -ro,
:mod:`hwfleet.mdp.trust`). SSH uses this machine's cluster key and the cluster
known_hosts, strictly (``StrictHostKeyChecking=yes``, no password prompts).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shlex
import socket
import time
from pathlib import Path
from typing import Any

from hwfleet.mdp.sync_config import SyncConfig as SyncConfig  # its former home
from hwfleet.mdp.tombstones import PROBE_PREFIX, STATE_DIR, Tombstones

log = logging.getLogger(__name__)


def is_local(ip: str) -> bool:
    """True for an address of this machine (binding to it succeeds)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.bind((ip, 0))
        except OSError:
            return False
    return True


class FolderSync:
    """One sync loop at a time; a new ``cluster_info`` replaces the previous one."""

    def __init__(self, config: SyncConfig | None) -> None:
        self.config = config
        self.last: dict[str, dict[str, Any]] = {}
        self.rounds = 0
        self.deleted = 0
        #: Peers whose sshd restricts this machine's key with rrsync (paths are relative).
        self.rrsync_peers: set[str] = set()
        self._task: asyncio.Task[None] | None = None

    def describe(self) -> str:
        return "on" if self.config else "off: folder sync is disabled on this machine"

    async def configure(self, members: list[str], folder: str) -> list[str]:
        """Start syncing ``folder`` with the members that are not this machine."""
        await self.close()
        if self.config is not None:  # what cluster_trust or bootstrap recorded, across restarts
            from hwfleet.mdp.trust import rrsync_peers

            self.rrsync_peers |= rrsync_peers(self.config.known_hosts)
        local = [m for m in members if is_local(m)]
        peers = [m for m in members if m not in local]
        if self.config is not None and peers:
            me = local[0] if local else socket.gethostname()
            self._task = asyncio.create_task(self._loop(me, peers, folder), name="mdp-sync")
        return peers

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    def command(self, me: str, peer: str, folder: str) -> list[str]:
        """rsync pulling ``peer``'s folder into ours."""
        assert self.config is not None
        cfg = self.config
        options = ["BatchMode=yes", "IdentitiesOnly=yes", "StrictHostKeyChecking=yes",
                   f"UserKnownHostsFile={cfg.known_hosts}"]  # fmt: skip
        argv = ["ssh", "-i", cfg.ssh_key]
        for option in options:
            argv += ["-o", option]
        ssh = " ".join(shlex.quote(a) for a in argv)
        path = folder.rstrip("/") + "/"
        source = "./" if peer in self.rrsync_peers else path
        state = f"/{STATE_DIR}/"
        return ["rsync", "-a", "--update", "--timeout=60", "--out-format=%n", "-e", ssh,
                f"--exclude=/{PROBE_PREFIX}*", f"--exclude={state}*.seen.json",
                f"--exclude={state}*.tmp", f"--exclude={state}{me}.json",
                f"{cfg.user}@{peer}:{source}", path]  # fmt: skip

    async def pull(self, me: str, peer: str, folder: str) -> tuple[dict[str, Any], set[str]]:
        """One rsync from ``peer``: its outcome and the files it brought."""
        started = time.monotonic()
        proc = await asyncio.create_subprocess_exec(
            *self.command(me, peer, folder),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            async with asyncio.timeout(300):
                out, err = await proc.communicate()
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
            return {"ok": False, "error": "rsync timed out"}, set()
        result: dict[str, Any] = {"ok": proc.returncode == 0,
                                  "seconds": round(time.monotonic() - started, 2)}  # fmt: skip
        if proc.returncode:
            result["error"] = err.decode(errors="replace").strip()[-300:]
        names = {n for n in out.decode(errors="replace").splitlines() if n and not n.endswith("/")}
        return result, names

    async def _loop(self, me: str, peers: list[str], folder: str) -> None:
        book = Tombstones(Path(folder), me)
        while True:
            scanned = await asyncio.to_thread(book.before, time.time())
            pulled: set[str] = set()
            for peer in peers:
                self.last[peer], names = await self.pull(me, peer, folder)
                pulled |= names
                if not self.last[peer]["ok"]:
                    log.warning("sync of %s from %s failed: %s", folder, peer,
                                self.last[peer].get("error"))  # fmt: skip
            deleted = await asyncio.to_thread(book.after, scanned, pulled, time.time())
            self.deleted += len(deleted)
            self.rounds += 1
            await asyncio.sleep(self.config.interval if self.config else 30.0)
