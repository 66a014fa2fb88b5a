"""Debian's chromium, driven by Playwright (its own browser download is not used)."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

from tests.conftest import service_missing

if TYPE_CHECKING:
    from playwright.async_api import Browser

CHROMIUM = os.environ.get("HWFLEET_TEST_CHROMIUM", "/usr/bin/chromium")
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@asynccontextmanager
async def chromium() -> AsyncIterator[Browser]:
    """A headless chromium browser (skips, or fails in CI, without chromium or playwright)."""
    if not os.access(CHROMIUM, os.X_OK):
        service_missing(f"{CHROMIUM} is not installed (scripts/system-packages: chromium)")
    try:
        from playwright.async_api import async_playwright
    except ImportError:
        service_missing("playwright is not installed (the dev dependency group)")
    async with async_playwright() as driver:
        browser = await driver.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        try:
            yield browser
        finally:
            await browser.close()
