"""Host-key verification: a known_hosts file, or trust on first use recorded in the data dir.

With ``--known-hosts F`` only keys in F are accepted. Without it, bootstrap keeps its own
file, ``<data-dir>/bootstrap_known_hosts``: a host already in it must present the same
key (a changed key is refused, never re-learned); a host not in it is trusted on first use,
its SHA256 fingerprint printed and the key recorded, so the next run verifies it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

TOFU_FILE = "bootstrap_known_hosts"


class HostKeyError(Exception):
    """The host's key does not match the recorded one; the message names both files."""


def entry_name(host: str, port: int) -> str:
    return host if port == 22 else f"[{host}]:{port}"


def recorded(path: Path, host: str, port: int) -> bool:
    """True when ``path`` has a line for ``host``:``port`` (our own, unhashed format)."""
    if not path.is_file():
        return False
    name = entry_name(host, port)
    for line in path.read_text(encoding="utf-8").splitlines():
        fields = line.split()
        if len(fields) >= 2 and not line.startswith("#") and name in fields[0].split(","):
            return True
    return False


@dataclass(slots=True)
class HostKeyPolicy:
    """What to pass asyncssh as ``known_hosts``, and what to do after connecting."""

    data_dir: str
    known_hosts: str | None = None

    def tofu_path(self) -> Path:
        return Path(self.data_dir) / TOFU_FILE

    def for_host(self, host: str, port: int) -> tuple[str | None, bool]:
        """``(known_hosts file or None, first_use)``; None means accept and record."""
        if self.known_hosts:
            return self.known_hosts, False
        path = self.tofu_path()
        if recorded(path, host, port):
            return str(path), False
        return None, True

    def remember(self, host: str, port: int, key: Any) -> str:
        """Record a first-use key; returns its SHA256 fingerprint."""
        path = self.tofu_path()
        path.parent.mkdir(parents=True, exist_ok=True)
        line = f"{entry_name(host, port)} {key.export_public_key('openssh').decode().strip()}\n"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        with os.fdopen(fd, "a", encoding="utf-8") as handle:
            handle.write(line)
        fingerprint: str = key.get_fingerprint("sha256")
        return fingerprint
