"""The Images and Graphs pages in a real browser (Debian's chromium through Playwright):
upload an image and see it listed, delete it behind its confirmation; run library graphs
on a simulated device from its Device page, watch the tasks reach the end live on the
Graphs page (opened before the run, never reloaded), and cancel a graph from there."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from tests.integration.controller.conftest import (
    PASSWORD,
    controller_settings,
    running_controller,
)
from tests.integration.web.test_dashboard_browser import UI_WAIT_MS, fleet_of, live, logged_in

from hwfleet.controller.app import Controller
from hwfleet.sim.profiles import generate

if TYPE_CHECKING:
    from playwright.async_api import Browser, FilePayload

RAW = bytes(range(256)) * 256  # 64 KiB with no magic: a raw disk image


@pytest.fixture
async def controller(tmp_path: Path) -> AsyncIterator[Controller]:
    settings = controller_settings(tmp_path / "controller", log_level="warning")
    async with running_controller(settings) as ctl:
        yield ctl


async def test_upload_an_image_see_it_listed_then_delete_it(
    browser: Browser, controller: Controller
) -> None:
    page = await logged_in(browser, controller, "/images")
    await live(page)
    assert await page.locator("tr[data-image]").count() == 0
    image: FilePayload = {"name": "tiny.img", "mimeType": "application/octet-stream", "buffer": RAW}
    await page.set_input_files("#image-file", files=[image])
    await page.fill("#image-name", "tiny disk")
    await page.click("button:text-is('Upload')")
    await page.wait_for_selector("#action-result .ok", timeout=UI_WAIT_MS)
    assert "image tiny disk stored" in await page.inner_text("#action-result")
    row = page.locator('tr[data-name="tiny disk"]')
    await row.wait_for(timeout=UI_WAIT_MS)  # listed without a reload
    [record] = await controller.images.list()
    assert record.size == len(RAW) and record.format == "raw"
    assert record.sha256[:16] in await row.inner_text()
    assert "64.0 KiB" in await row.inner_text()
    await row.get_by_role("link", name="delete image tiny disk").click()
    await page.wait_for_url(f"**/images/{record.id}/delete")
    assert await controller.images.list() != []  # the link only asks
    await page.click("button:text-is('Delete tiny disk')")
    await page.wait_for_url(controller.api_url + "/images")
    assert await page.locator("tr[data-image]").count() == 0
    assert await controller.images.list() == []


async def test_run_graphs_from_the_device_page_watch_them_and_cancel_one(
    browser: Browser, controller: Controller, tmp_path: Path, deadline: float
) -> None:
    sim = fleet_of(controller, generate(1, seed=31), tmp_path, PASSWORD)
    await sim.start()
    try:
        assert await sim.wait_connected(deadline) == 1
        uuid = sim.devices[0].runtime.info.uuid
        graphs = await logged_in(browser, controller, "/graphs")
        await live(graphs)
        assert await graphs.locator("tr[data-graph]").count() == 0
        device = await graphs.context.new_page()  # a second tab, same session
        await device.goto(f"{controller.api_url}/devices/{uuid}")
        await live(device)
        await device.select_option("#graph", "Graph.Hwfleet.Discovery")
        await device.click("button:text-is('Run graph')")
        await device.wait_for_selector(
            "#action-result .ok >> text=started graph", timeout=UI_WAIT_MS
        )
        # The Graphs tab, untouched since it opened, follows the graph to its end.
        done = graphs.locator("#recent-graphs tr[data-graph][data-status=succeeded]")
        await done.wait_for(timeout=UI_WAIT_MS)
        states = done.locator("li[data-state]")
        assert await states.count() == 3
        for i in range(3):
            assert await states.nth(i).get_attribute("data-state") == "succeeded"
        # A long burn-in: the device page shows it as its active graph; cancelled from Graphs.
        await device.select_option("#graph", "Graph.Hwfleet.BurnIn")
        await device.fill("#graph-options", '{"soak": {"seconds": 600}}')
        await device.click("button:text-is('Run graph')")
        await device.wait_for_selector("#active-graph >> text=Running", timeout=UI_WAIT_MS)
        running = graphs.locator("#active-graphs tr[data-graph][data-status=running]")
        await running.wait_for(timeout=UI_WAIT_MS)
        graph_id = await running.get_attribute("data-graph")
        assert graph_id is not None
        soak = running.locator("li[data-label=soak][data-state=running]")
        await soak.wait_for(timeout=UI_WAIT_MS)
        # The live region re-renders every 2 s while a graph runs, so the button is never
        # "stable" for Playwright's actionability check: press it the way a click does.
        cancel = running.get_by_role("button", name=f"cancel graph {graph_id[:8]}")
        await cancel.evaluate("button => button.click()")
        await graphs.wait_for_selector(
            f'#recent-graphs tr[data-graph="{graph_id}"][data-status=cancelled]',
            timeout=UI_WAIT_MS,
        )
        await device.wait_for_selector("#active-graph >> text=no graph running", timeout=UI_WAIT_MS)
        graph = await controller.graphs.engine.get(graph_id)
        assert graph is not None and graph["status"] == "cancelled"
    finally:
        await sim.close()
