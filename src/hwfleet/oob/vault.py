"""BMC credentials encrypted at rest: AES-256-GCM under a key file in the data dir.

The key file (``bmc.key``, mode 0600) is created on first use; the database holds only
nonce + ciphertext, bound to the node's uuid as associated data so a row copied onto
another node does not decrypt. Losing the key file loses the credentials (they must be
set again), which is the point: a database dump alone reveals nothing.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

import msgspec
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from hwfleet.oob.driver import BmcAddress

KEY_FILE = "bmc.key"
_NONCE = 12


class VaultError(Exception):
    """The key file is unusable or a stored secret does not decrypt under it."""


class Vault:
    """Seals and opens :class:`BmcAddress` records for the store."""

    def __init__(self, key: bytes) -> None:
        if len(key) != 32:
            raise VaultError("the BMC key must be 32 bytes")
        self._aead = AESGCM(key)

    @classmethod
    def open(cls, data_dir: str | os.PathLike[str]) -> Vault:
        """Load ``<data_dir>/bmc.key``, creating it (0600, never overwritten) if missing."""
        path = Path(data_dir) / KEY_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass
        else:
            with os.fdopen(fd, "wb") as f:
                f.write(secrets.token_bytes(32))
        mode = path.stat().st_mode & 0o777
        if mode & 0o077:
            raise VaultError(f"{path} is readable by others (mode {mode:o}); chmod 600 it")
        return cls(path.read_bytes())

    def seal(self, node: str, address: BmcAddress) -> bytes:
        nonce = secrets.token_bytes(_NONCE)
        return nonce + self._aead.encrypt(nonce, msgspec.json.encode(address), node.encode())

    def unseal(self, node: str, blob: bytes) -> BmcAddress:
        try:
            plain = self._aead.decrypt(blob[:_NONCE], blob[_NONCE:], node.encode())
        except (InvalidTag, ValueError):
            raise VaultError(
                f"the BMC credentials of {node} do not decrypt with this data dir's {KEY_FILE} "
                "(set them again with `hwfleet bmc set`)"
            ) from None
        return msgspec.json.decode(plain, type=BmcAddress)
