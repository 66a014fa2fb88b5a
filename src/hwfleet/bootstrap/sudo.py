"""Bootstrap as a non-root SSH user: every command through ``sudo -n`` (never a prompt).

The user needs passwordless sudo on the target. Files are pushed over SFTP as the user
into a private ``mktemp -d`` directory and copied into place as root, since the SFTP
session itself cannot write below /opt.
"""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

from hwfleet.bootstrap.remote import RemoteError, run


class SudoConnection:
    """An asyncssh connection whose ``run`` executes as root through ``sudo -n``."""

    def __init__(self, conn: Any) -> None:
        self.raw = conn

    async def run(self, command: str, **kwargs: Any) -> Any:
        return await self.raw.run(f"sudo -n -- sh -c {shlex.quote(command)}", **kwargs)

    def get_server_host_key(self) -> Any:
        return self.raw.get_server_host_key()


async def as_root(conn: Any, user: str) -> Any:
    """``conn`` itself for root; else a :class:`SudoConnection`, once ``sudo -n`` works."""
    if user == "root":
        return conn
    probe = await conn.run("sudo -n true", check=False, timeout=60)
    if probe.exit_status != 0:
        err = str(probe.stderr or "").strip()[-200:] or f"exit {probe.exit_status}"
        raise RemoteError(
            f"{user} cannot become root with `sudo -n` ({err}): give it passwordless sudo "
            "or bootstrap as root"
        )
    return SudoConnection(conn)


async def push(conn: Any, files: list[str], dest: str) -> None:
    """Put ``files`` into the directory ``dest`` on the target."""
    if not isinstance(conn, SudoConnection):
        async with conn.start_sftp_client() as sftp:
            await sftp.put(files, dest)
        return
    stage = (await run(conn.raw, ["mktemp", "-d"])).strip()
    try:
        async with conn.raw.start_sftp_client() as sftp:
            await sftp.put(files, stage)
        await run(conn, ["cp", *(f"{stage}/{Path(f).name}" for f in files), f"{dest}/"])
    finally:
        await run(conn.raw, ["rm", "-rf", stage], check=False)
