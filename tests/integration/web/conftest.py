"""A real controller serving the dashboard, simulated devices, and a logged-in client."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest
from tests.integration.controller.conftest import (
    connected_fleet,
    controller_settings,
    running_controller,
)
from tests.integration.web.browser import chromium

from hwfleet.controller.app import Controller
from hwfleet.sim.fleet import SimFleet
from hwfleet.sim.profiles import generate

if TYPE_CHECKING:
    from playwright.async_api import Browser

CSRF = re.compile(r'name="csrf" value="([^"]+)"')


@pytest.fixture
async def controller(tmp_path: Path) -> AsyncIterator[Controller]:
    async with running_controller(controller_settings(tmp_path / "controller")) as ctl:
        yield ctl


@pytest.fixture
async def fleet(controller: Controller, deadline: float, tmp_path: Path) -> AsyncIterator[SimFleet]:
    async with connected_fleet(controller, generate(3, seed=5), 5, tmp_path, deadline) as sim:
        yield sim


async def log_in(client: httpx.AsyncClient, token: str) -> str:
    """Log ``client`` in; returns the session's CSRF token (read from the fleet page)."""
    reply = await client.post("/login", data={"token": token})
    assert reply.status_code == 303, reply.text
    page = await client.get("/")
    assert page.status_code == 200, page.text
    found = CSRF.search(page.text)
    assert found is not None
    return found.group(1)


@pytest.fixture
async def browser_client(controller: Controller) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=controller.api_url, timeout=20) as client:
        yield client


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    """Debian's chromium, headless, for one test (its pages share nothing with the next)."""
    async with chromium() as launched:
        yield launched
