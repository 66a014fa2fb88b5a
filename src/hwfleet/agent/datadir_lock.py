"""One agent per data directory: the second is refused at start.

The data directory holds the device's identity (uuid, key, certificate). Two agents on
one directory are one device twice: each connect replaces the other's link, and the
controller, seeing a handshake that does not list the tasks it gave the other, ends
them as lost — while the other process may still be writing an image. So ``hwfleet
agent`` holds an exclusive ``flock`` on ``<data-dir>/agent.lock`` for its lifetime (the
kernel drops it when the process ends, however it ends) and a second one exits with
the first one's pid.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

from hwfleet.errors import ConflictError

LOCK_FILE = "agent.lock"


class DataDirInUseError(ConflictError, ValueError):
    """Another agent holds this data directory."""


@contextlib.contextmanager
def data_dir_lock(data_dir: str | os.PathLike[str]) -> Iterator[None]:
    """Hold ``<data_dir>/agent.lock`` exclusively, or raise :class:`DataDirInUseError`."""
    path = Path(data_dir) / LOCK_FILE
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip()
            who = f" (pid {holder})" if holder.isdigit() else ""
            raise DataDirInUseError(
                f"another hwfleet agent{who} is running on {data_dir}: two agents with one "
                "identity replace each other's link and lose each other's tasks — stop it, "
                "or give this one its own --data-dir"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)
