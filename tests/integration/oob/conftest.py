"""Fixtures for the oob tests: a store, the BMC service, and emulated BMCs."""

from __future__ import annotations

import functools
import hashlib
import http.server
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from tests.oob_support.emulators import Redfish, redfish_emulator

from hwfleet.oob.service import OobService
from hwfleet.oob.vault import Vault
from hwfleet.store import Store, open_store


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    opened = await open_store(f"sqlite+aiosqlite:///{tmp_path / 'data' / 'hwfleet.db'}")
    try:
        yield opened
    finally:
        await opened.close()


@pytest.fixture
async def oob(store: Store, tmp_path: Path) -> AsyncIterator[OobService]:
    service = OobService(store, Vault.open(tmp_path / "data"), timeout=8.0, workers=4)
    try:
        yield service
    finally:
        await service.close()


@pytest.fixture
def redfish(tmp_path: Path) -> Iterator[Redfish]:
    with redfish_emulator(tmp_path / "redfish") as emu:
        yield emu


@pytest.fixture
def images(tmp_path: Path) -> Iterator[tuple[str, str]]:
    """A firmware image served over HTTP on loopback: (url, sha256)."""
    root = tmp_path / "images"
    root.mkdir()
    image = b"HWFLEET-FW component=BIOS version=1.2.0\n" + bytes(range(256)) * 64
    (root / "bios-1.2.0.bin").write_bytes(image)
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/bios-1.2.0.bin"
        yield url, hashlib.sha256(image).hexdigest()
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)
