"""A Kea left running by a controller that died (SIGKILL, a crash): found and stopped.

The supervisor writes ``hwfleet-owner.json`` beside Kea's files when it starts Kea: the
controller's pid and start time, and Kea's pid. A later start reads it. If that controller
is gone but its Kea still runs, the Kea is an orphan — its log pipe has no reader and
nothing restarts it when it dies — so it is told to shut down (Kea's ``shutdown`` command,
which writes its leases out), its exit is awaited through a pidfd (not polled), it is
signalled if it does not go, and a supervised Kea is started in its place. A Kea whose owner
still runs (another controller on this data dir), or with no owner file (one an operator
started on hwfleet's socket), is attached to instead, as before.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
from dataclasses import dataclass
from pathlib import Path

from hwfleet.boot.kea_control import KeaControl, KeaError

log = logging.getLogger(__name__)

OWNER_FILE = "hwfleet-owner.json"


@dataclass(frozen=True, slots=True)
class Owner:
    controller_pid: int
    controller_start: int  # /proc/<pid>/stat start time: a reused pid does not match
    kea_pid: int


def process_start(pid: int) -> int | None:
    """The process's start time in clock ticks since boot; None when it does not exist."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: split after the last ')'.
    fields = stat.rsplit(")", 1)[-1].split()
    return int(fields[19])  # field 22 of stat(5); fields[0] here is field 3


def write_owner(directory: Path, kea_pid: int) -> None:
    me = os.getpid()
    doc = {"controller_pid": me, "controller_start": process_start(me), "kea_pid": kea_pid}
    tmp = directory / (OWNER_FILE + ".tmp")
    tmp.write_text(json.dumps(doc))
    os.replace(tmp, directory / OWNER_FILE)


def clear_owner(directory: Path) -> None:
    (directory / OWNER_FILE).unlink(missing_ok=True)


def read_owner(directory: Path) -> Owner | None:
    try:
        doc = json.loads((directory / OWNER_FILE).read_text())
        return Owner(int(doc["controller_pid"]), int(doc["controller_start"]), int(doc["kea_pid"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def runs_config(pid: int, config: Path) -> bool:
    """Whether ``pid`` is a kea-dhcp4 reading ``config`` (so a reused pid is never signalled)."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return any(a.endswith(b"kea-dhcp4") for a in argv) and str(config).encode() in argv


def find_orphan(directory: Path, config: Path) -> Owner | None:
    """The owner record of a Kea still running for a controller that no longer does."""
    owner = read_owner(directory)
    if owner is None:
        return None
    if process_start(owner.controller_pid) == owner.controller_start:
        return None  # its controller is alive: not an orphan
    return owner if runs_config(owner.kea_pid, config) else None


async def stop_orphan(control: KeaControl, owner: Owner, timeout: float = 10.0) -> None:
    """Shut the orphan down and return once it has exited."""
    await _stop(control, owner, timeout)


def remove_stale_pidfiles(directory: Path, config: Path) -> list[Path]:
    """Remove Kea's pid files in ``directory`` that name no running Kea on ``config``.

    Kea refuses to start while its pid file names any existing pid. A Kea that exited —
    by its parent-death signal after a SIGKILLed controller, or stopped as an orphan — may
    stay a zombie for a while (its new parent need not reap it at once), and a pid may be
    reused by an unrelated process. The directory is hwfleet's own (KEA_PIDFILE_DIR), so a
    pid file there that names no live kea-dhcp4 on this config is stale. A zombie has an
    empty cmdline, so ``runs_config`` is False for it."""
    removed = []
    for pidfile in directory.glob("*.pid"):
        with contextlib.suppress(OSError, ValueError):
            if not runs_config(int(pidfile.read_text().strip()), config):
                pidfile.unlink()
                removed.append(pidfile)
    return removed


async def _stop(control: KeaControl, owner: Owner, timeout: float) -> None:
    try:
        pidfd = os.pidfd_open(owner.kea_pid)
    except ProcessLookupError:
        return  # gone already
    loop = asyncio.get_running_loop()
    exited: asyncio.Future[None] = loop.create_future()

    def on_exit() -> None:
        if not exited.done():
            exited.set_result(None)

    # A pidfd becomes readable when the process exits: an event, for a process not our child.
    loop.add_reader(pidfd, on_exit)
    try:
        try:
            await control.command("shutdown")
        except KeaError as exc:  # not answering: signals instead
            log.warning("orphaned Kea did not take 'shutdown' (%s): signalling it", exc)
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                async with asyncio.timeout(timeout):
                    await asyncio.shield(exited)
                return
            except TimeoutError:
                log.warning("orphaned Kea (pid %s) still runs: sending %s", owner.kea_pid, sig.name)
                with contextlib.suppress(ProcessLookupError):
                    signal.pidfd_send_signal(pidfd, sig)
        await exited  # SIGKILL cannot be refused
    finally:
        loop.remove_reader(pidfd)
        os.close(pidfd)
