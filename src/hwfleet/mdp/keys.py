"""Machine keys: made once on the machine (0600), held by the controller in ``.known_machines``.

The agent's key file is ``<data-dir>/mdp.key`` (64 hex characters). It leaves the
machine only over the controller's authenticated link (the ``mdp.key`` agent command,
mTLS) or bootstrap's SSH session — never over UDP. The controller mirrors each key
to ``<data-dir>/.known_machines/<ip>.txt`` (directory 0700, files 0600), the seed's
layout, so outside tools find it where the seed says.
"""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path

from hwfleet.trust.files import read_text, write_private

KEY_FILE = "mdp.key"
KNOWN_DIR = ".known_machines"


class KeyFileError(ValueError):
    """A key file exists but does not hold a key; the message names the file."""


def parse_key(text: str, where: str) -> bytes:
    value = text.strip()
    try:
        key = bytes.fromhex(value)
    except ValueError:
        raise KeyFileError(f"{where} does not hold a hex MDP key") from None
    if len(key) < 16:
        raise KeyFileError(f"{where} holds a key shorter than 16 bytes")
    return key


def load_or_create_key(data_dir: str | os.PathLike[str]) -> bytes:
    """This machine's key, made (256 random bits) on the first run."""
    path = Path(data_dir) / KEY_FILE
    text = read_text(path)
    if text is not None:
        return parse_key(text, str(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    key = os.urandom(32)  # what secrets.token_bytes does, without importing random
    write_private(path, key.hex().encode("ascii") + b"\n")
    return key


def _checked_ip(ip: str) -> str:
    """The address in canonical form; a file name can never escape the directory."""
    try:
        return str(ipaddress.ip_address(ip.strip()))
    except ValueError:
        raise ValueError(f"{ip!r} is not an IP address") from None


class KnownMachines:
    """The controller's keys, one file per machine address."""

    def __init__(self, data_dir: str | os.PathLike[str]) -> None:
        self.root = Path(data_dir) / KNOWN_DIR

    def path(self, ip: str) -> Path:
        return self.root / f"{_checked_ip(ip)}.txt"

    def get(self, ip: str) -> bytes | None:
        path = self.path(ip)
        text = read_text(path)
        return None if text is None else parse_key(text, str(path))

    def put(self, ip: str, key: bytes) -> bool:
        """Record ``key`` for ``ip``; True when that changed the file."""
        if self.get(ip) == key:
            return False
        self.root.mkdir(parents=True, exist_ok=True)
        os.chmod(self.root, 0o700)
        write_private(self.path(ip), key.hex().encode("ascii") + b"\n")
        return True

    def addresses(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(p.name[: -len(".txt")] for p in self.root.glob("*.txt"))
