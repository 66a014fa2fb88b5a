"""Fixtures for the oob tests: a store, the BMC service, and emulated BMCs."""

from __future__ import annotations

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
