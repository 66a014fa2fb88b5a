"""Small JSON documents an agent keeps about itself: its name, network record, trust list.

Each document is one file in the agent's data dir, written atomically with mode
0600 (:func:`hwfleet.trust.files.write_private`): a crash mid-write never
leaves half a trust list behind, and nothing here is readable by other local
users. An agent without a data dir (``hwfleet sim --insecure``) keeps the same
documents in memory, so the commands behave the same and simply forget on exit.

Only the standard library is imported: this module is loaded by every agent.
"""

from __future__ import annotations

import asyncio
import copy
import json
import logging
import os
from pathlib import Path
from typing import Any

from hwfleet.errors import StoreError
from hwfleet.trust import fingerprints
from hwfleet.trust.files import PKI_DIR, read_text, write_private
from hwfleet.trust.identity import PINNED_CA

log = logging.getLogger(__name__)

#: The persisted device name (``device.rename``).
DEVICE_DOC = "device.json"


class LocalStateError(StoreError, ValueError):
    """A state file exists but cannot be used; the message names the file and the fix."""


class LocalState:
    """The agent's own documents, in ``data_dir`` or (without one) in memory."""

    def __init__(self, data_dir: str | os.PathLike[str] | None) -> None:
        self.data_dir = None if data_dir is None else Path(data_dir)
        self._memory: dict[str, dict[str, Any]] = {}
        #: Held by every read-modify-write, so two commands cannot interleave their changes.
        self.lock = asyncio.Lock()

    def path(self, name: str) -> Path | None:
        return None if self.data_dir is None else self.data_dir / name

    def read(self, name: str) -> dict[str, Any] | None:
        """The document, or None when it was never written."""
        path = self.path(name)
        if path is None:
            doc = self._memory.get(name)
            return None if doc is None else copy.deepcopy(doc)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        try:
            doc = json.loads(text)
        except ValueError as exc:
            raise LocalStateError(f"{path} is not valid JSON ({exc}); fix or remove it") from None
        if not isinstance(doc, dict):
            raise LocalStateError(f"{path} must hold a JSON object; fix or remove it")
        return doc

    def write(self, name: str, doc: dict[str, Any]) -> None:
        """Replace the document atomically (mode 0600 from the first byte)."""
        path = self.path(name)
        if path is None:
            self._memory[name] = copy.deepcopy(doc)
            return
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        write_private(path, json.dumps(doc, indent=2, sort_keys=True).encode() + b"\n")

    def pinned_controller(self) -> str | None:
        """Fingerprint of the controller CA this agent pinned at enrollment (None: not enrolled).

        On the stream carrier that CA is the only one the agent's TLS accepts, so
        it identifies the controller sending the current command.
        """
        if self.data_dir is None:
            return None
        pem = read_text(self.data_dir / PKI_DIR / PINNED_CA)
        if not pem:
            return None
        try:
            return fingerprints.of_cert_pem(pem)
        except ValueError:
            log.warning("the pinned controller CA in %s is unreadable", self.data_dir / PKI_DIR)
            return None

    # -- the device name -------------------------------------------------------------------
    def saved_name(self) -> str | None:
        doc = self.read(DEVICE_DOC) or {}
        name = doc.get("name")
        return name if isinstance(name, str) and name else None

    def save_name(self, name: str) -> None:
        doc = self.read(DEVICE_DOC) or {}
        doc["name"] = name
        self.write(DEVICE_DOC, doc)

    # -- maintenance (kept across restarts: the operator said so, not the process) --------
    def saved_maintenance(self) -> bool:
        return (self.read(DEVICE_DOC) or {}).get("maintenance") is True

    def save_maintenance(self, on: bool) -> None:
        doc = self.read(DEVICE_DOC) or {}
        doc["maintenance"] = on
        self.write(DEVICE_DOC, doc)
