"""Runs Kea: starts it, restarts it when it dies (with an event), or attaches to a running one.

Kea logs to stdout (the pipe this module reads); ``DHCP4_STARTED`` is the signal
that it serves, so start-up waits on Kea's own word rather than polling. Restarts
back off (1 s doubling to 30 s, reset after a minute of good service), so a Kea
that cannot start is not spun on.

Kea never outlives the controller: a clean stop (SIGTERM, SIGINT) terminates it in
``close``; Kea is started under ``setpriv --pdeathsig TERM``, so the kernel stops it when
the controller is killed outright; and a Kea orphaned anyway (no setpriv, a Kea from before)
is found at the next start and replaced (kea_orphan).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import shutil
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

from hwfleet.boot.kea_config import KeaLayout
from hwfleet.boot.kea_control import KeaControl
from hwfleet.boot.kea_orphan import (
    clear_owner,
    find_orphan,
    remove_stale_pidfiles,
    stop_orphan,
    write_owner,
)

log = logging.getLogger(__name__)

KEA_BINARY = "kea-dhcp4"
STARTED_MARK = b"DHCP4_STARTED"
#: Event keys on ``events`` (hwfleet's own, beside seed 003's).
EVENT_EXITED = "boot.kea.exited"
EVENT_STARTED = "boot.kea.started"

Notify = Callable[[str, dict[str, Any]], Awaitable[None]]


class KeaStartError(RuntimeError):
    """Kea exited or stayed silent instead of starting; the message carries its last lines."""


class KeaSupervisor:
    """One Kea process for hwfleet's boot interface."""

    def __init__(
        self,
        layout: KeaLayout,
        notify: Notify,
        *,
        launcher: Sequence[str] = (),
        binary: str = KEA_BINARY,
        start_timeout: float = 20.0,
        max_backoff: float = 30.0,
        pdeathsig: bool = True,
    ) -> None:
        """``launcher``: words put before the binary (tests: ``ip netns exec NS``);
        ``pdeathsig``: Kea gets SIGTERM when this process dies (tests that make an orphan
        turn it off)."""
        self.layout = layout
        self.control = KeaControl(layout.socket)
        self._notify = notify
        # PR_SET_PDEATHSIG survives the exec of ``ip netns exec`` and of kea-dhcp4 (neither is
        # set-uid nor has file capabilities on Debian, which would clear it).
        guard = (
            ["setpriv", "--pdeathsig", "TERM", "--"]
            if pdeathsig and shutil.which("setpriv")
            else []
        )
        self._argv = [*guard, *launcher, binary, "-c", str(layout.config)]
        self._start_timeout = start_timeout
        self._max_backoff = max_backoff
        self._proc: asyncio.subprocess.Process | None = None
        self._watch: asyncio.Task[None] | None = None
        self._stopping = False
        self.restarts = 0
        self.attached = False
        self._tail: list[str] = []

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    async def start(self, config: dict[str, Any]) -> None:
        """Write ``config`` and run Kea, or use the one already answering on the socket."""
        self.layout.directory.mkdir(parents=True, exist_ok=True)
        write_config(self.layout.config, config)
        orphan = find_orphan(self.layout.directory, self.layout.config)
        if orphan is not None:
            log.warning(
                "Kea (pid %s) was left running by a controller that is gone (pid %s): "
                "stopping it and starting a supervised one",
                orphan.kea_pid,
                orphan.controller_pid,
            )
            await stop_orphan(self.control, orphan)
        elif await self.control.alive():
            # Another Kea owns the socket and is no orphan (an operator's, or a live controller's
            # on this data dir): use it with hwfleet's configuration rather than fight it.
            self.attached = True
            await self.control.command("config-set", config)
            log.info("attached to the Kea answering on %s", self.layout.socket)
            return
        await self._spawn()
        self._watch = asyncio.create_task(self._supervise(), name="kea-supervisor")

    async def _spawn(self) -> None:
        env = dict(os.environ)
        # Kea's pid and lock files go beside its config, so instances never share /run/kea.
        env["KEA_PIDFILE_DIR"] = str(self.layout.directory)
        env["KEA_LOCKFILE_DIR"] = str(self.layout.directory)
        for stale in remove_stale_pidfiles(self.layout.directory, self.layout.config):
            log.info("removed %s: it named no running Kea", stale.name)
        self._tail = []
        self._proc = await asyncio.create_subprocess_exec(
            *self._argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            env=env,
            start_new_session=True,  # a ^C to the controller is ours to pass on, not Kea's
        )
        assert self._proc.stdout is not None
        started = asyncio.get_running_loop().create_future()
        reader = asyncio.create_task(self._read_log(self._proc.stdout, started))
        try:
            async with asyncio.timeout(self._start_timeout):
                await started
        except TimeoutError:
            await self._kill()
            raise KeaStartError(
                self._why(f"did not start within {self._start_timeout:g} s")
            ) from None
        except KeaStartError:
            await self._kill()
            raise
        finally:
            if not started.done():
                reader.cancel()
        write_owner(self.layout.directory, self._proc.pid)
        log.info("Kea started (pid %s) on %s", self._proc.pid, self.layout.socket)

    async def _read_log(self, stream: asyncio.StreamReader, started: asyncio.Future[None]) -> None:
        while line := await stream.readline():
            text = line.decode(errors="replace").rstrip()
            self._tail = [*self._tail[-19:], text]
            log.debug("kea: %s", text)
            if STARTED_MARK in line and not started.done():
                started.set_result(None)
        if not started.done():
            started.set_exception(KeaStartError(self._why("exited while starting")))

    def _why(self, what: str) -> str:
        lines = "\n  ".join(self._tail[-8:]) or "(no output)"
        return f"Kea ({' '.join(self._argv)}) {what}; its last lines:\n  {lines}"

    async def _supervise(self) -> None:
        backoff = 1.0
        while not self._stopping:
            assert self._proc is not None
            began = time.monotonic()
            code = await self._proc.wait()
            if self._stopping:
                return
            if time.monotonic() - began > 60:
                backoff = 1.0
            log.error("Kea exited with status %s; restarting in %g s", code, backoff)
            await self._safe_notify(EVENT_EXITED, {"status": code, "restart_in": backoff})
            await asyncio.sleep(backoff)  # back-off between restarts, not synchronisation
            backoff = min(backoff * 2, self._max_backoff)
            try:
                await self._spawn()
            except (KeaStartError, OSError) as exc:
                log.error("%s", exc)
                continue
            self.restarts += 1
            await self._safe_notify(EVENT_STARTED, {"pid": self.pid, "restarts": self.restarts})

    async def _safe_notify(self, key: str, payload: dict[str, Any]) -> None:
        try:
            await self._notify(key, payload)
        except Exception:  # an event that cannot be recorded must not stop the supervision
            log.exception("could not publish %s", key)

    async def _kill(self) -> None:
        proc = self._proc
        if proc is None or proc.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            proc.terminate()
        try:
            async with asyncio.timeout(10):
                await proc.wait()
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()

    async def close(self) -> None:
        self._stopping = True
        if self._watch is not None:
            self._watch.cancel()
            await asyncio.gather(self._watch, return_exceptions=True)
        await self._kill()
        if not self.attached:
            clear_owner(self.layout.directory)


def write_config(path: Path, config: dict[str, Any]) -> None:
    """Atomically: Kea reading a half-written file on restart would refuse to start."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(config, indent=2))
    os.replace(tmp, path)
