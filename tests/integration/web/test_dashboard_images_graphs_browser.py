"""The Images and Graphs pages in a real browser (Debian's chromium through Playwright):
upload an image and see it listed, delete it behind its confirmation; run library graphs
on a simulated device from its Device page, watch the tasks reach the end live on the
Graphs page (opened before the run, never reloaded), and cancel a graph from there while
another device's task progress bar advances in place."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec
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

    from hwfleet.agent.runtime import AgentRuntime
    from hwfleet.agent.tasks import Report

RAW = bytes(range(256)) * 256  # 64 KiB with no magic: a raw disk image


class StepParams(msgspec.Struct, kw_only=True):
    task_id: str


class Stepped:
    """A long command added to a simulated agent whose progress the test moves: each
    :meth:`step` lets it report the next percentage (over the real link, as task_status)."""

    METHOD = "test.steps"
    PERCENTS = (10.0, 50.0, 90.0)

    def __init__(self, runtime: AgentRuntime) -> None:
        self._go: asyncio.Queue[None] = asyncio.Queue()

        async def start(rt: AgentRuntime, params: StepParams) -> dict[str, Any]:
            return rt.tasks.start(params.task_id, self.METHOD, self._work)

        runtime.registry.add(self.METHOD, start, StepParams)

    async def _work(self, report: Report) -> dict[str, Any]:
        for percent in self.PERCENTS:
            await self._go.get()
            await report(percent, None)
        await self._go.get()
        return {"steps": len(self.PERCENTS)}

    def step(self) -> None:
        self._go.put_nowait(None)


#: Reloads the live region once more and resolves when that reload has settled (with
#: hx-sync "queue last" it runs after any reload already in flight).
SETTLED = """region => new Promise(resolve => {
  // The first reload that starts after the trigger (ours, or a later one that replaced it
  // in the "queue last" slot), and the settle of that same request: the settle of a reload
  // already in flight must not count (it resolved too early and a CI run lost a click to it).
  let ours = null;
  region.addEventListener("htmx:beforeRequest", function mine(evt) {
    ours = evt.detail.xhr;
    region.removeEventListener("htmx:beforeRequest", mine);
  });
  region.addEventListener("htmx:afterSettle", function done(evt) {
    if (ours !== null && evt.detail.xhr === ours) {
      region.removeEventListener("htmx:afterSettle", done);
      resolve();
    }
  });
  htmx.trigger(document.body, "refresh");
})"""

#: Remembers the newest recorded-event id the page's live stream has delivered.
TRACK_EVENT_IDS = """() => {
  window.newestEventId = 0;
  document.addEventListener("htmx:sseMessage", evt => {
    const id = Number((evt.detail && evt.detail.lastEventId) || 0);
    if (id > window.newestEventId) { window.newestEventId = id; }
  });
}"""

#: Counts what replaces nodes in a page's live region (a re-render adds and removes rows).
COUNT_RERENDERS = """region => {
  window.reRenders = 0;
  new MutationObserver(records => {
    for (const r of records) {
      if (r.type === "childList" && (r.addedNodes.length || r.removedNodes.length)
          && !r.target.closest("progress, [data-col], .task-state, .attempt")) {
        window.reRenders += 1;
      }
    }
  }).observe(region, {childList: true, subtree: true});
}"""


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
    await live(page)
    # Another operator (or `hwfleet images add`) adds one: this page shows it, no reload.
    await controller.images.add(one_chunk(RAW), "from elsewhere")
    await page.locator('tr[data-name="from elsewhere"]').wait_for(timeout=UI_WAIT_MS)


async def one_chunk(data: bytes) -> AsyncIterator[bytes]:
    yield data


async def test_upload_without_javascript_and_a_restart_keeps_the_login(
    browser: Browser, tmp_path: Path
) -> None:
    """The form posts multipart (streamed to the registry) and lands on the Images page;
    the controller restarts (same data dir and address) and the browser is still in."""
    settings = controller_settings(tmp_path / "controller", log_level="warning")
    context = await browser.new_context(java_script_enabled=False)
    page = await context.new_page()
    async with running_controller(settings) as first:
        address = first.api_url
        await page.goto(address + "/login")
        await page.fill("#token", first.operator_token)
        await page.press("#token", "Enter")
        await page.wait_for_url(address + "/")
        await page.goto(address + "/images")
        image: FilePayload = {
            "name": "plain.img",
            "mimeType": "application/octet-stream",
            "buffer": RAW,
        }
        await page.fill("#image-name", "no script")
        await page.set_input_files("#image-file", files=[image])
        await page.click("button:text-is('Upload')")
        await page.wait_for_url("**/images?added=*")
        assert "image no script stored (64.0 KiB" in await page.inner_text("#action-result")
        assert await page.locator('tr[data-name="no script"]').count() == 1
    again = controller_settings(
        tmp_path / "controller", log_level="warning", api_listen=address.split("://", 1)[1]
    )
    async with running_controller(again) as second:
        assert second.api_url == address
        await page.goto(address + "/images")
        assert page.url == address + "/images"  # not sent to /login: the session survived
        assert await page.locator('tr[data-name="no script"]').count() == 1


async def test_run_graphs_from_the_device_page_watch_them_and_cancel_one(
    browser: Browser, controller: Controller, tmp_path: Path, deadline: float
) -> None:
    sim = fleet_of(controller, generate(2, seed=31), tmp_path, PASSWORD)
    await sim.start()
    try:
        assert await sim.wait_connected(deadline) == 2
        uuid = sim.devices[0].runtime.info.uuid
        graphs = await logged_in(browser, controller, "/graphs")
        await graphs.evaluate(TRACK_EVENT_IDS)
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
        cancel = running.get_by_role("button", name=f"cancel graph {graph_id[:8]}")
        # The last task.finished (the task before the soak) may not have reached the page
        # yet — the soak's start travels apart from it, as progress — and its reload would
        # land in the counted window (a CI run saw that). Wait until the page has seen every
        # event recorded so far, then let one more reload (queued behind any in flight) land,
        # then count from a settled region.
        async with controller.store.tx() as tx:
            recorded = await tx.events.list(newest_first=True, limit=1)
        newest = recorded[0].id if recorded else 0
        await graphs.wait_for_function(
            f"() => window.newestEventId >= {newest}", timeout=UI_WAIT_MS
        )
        await graphs.locator("#live").evaluate(SETTLED)
        await graphs.locator("#live").evaluate(COUNT_RERENDERS)
        await cancel.evaluate("button => { button.dataset.mark = 'kept'; }")
        # Meanwhile a task on the other device: its bar advances in place on its page.
        other = sim.devices[1].runtime
        stepped = Stepped(other)
        bars = await graphs.context.new_page()
        await bars.goto(f"{controller.api_url}/devices/{other.info.uuid}")
        await live(bars)
        await bars.locator("#live").evaluate(SETTLED)  # a graph runs: the stream's catchup
        task = await controller.tasks.start(other.info.uuid, Stepped.METHOD, {})
        row = bars.locator(f'tr[data-task="{task.id}"]')
        await row.locator("progress").wait_for(timeout=UI_WAIT_MS)  # a new task: one reload
        await row.evaluate("row => { row.dataset.mark = 'kept'; }")
        for percent in Stepped.PERCENTS:
            stepped.step()
            shown = f'tr[data-task="{task.id}"][data-mark=kept] progress[value="{percent:g}"]'
            await bars.wait_for_selector(shown, timeout=UI_WAIT_MS)  # the same row, updated
            assert f"{percent:g} %" in await row.inner_text()
        # No re-render of the Graphs page all that time: its button is the one marked,
        # and Playwright's own click (which waits for a stable element) presses it.
        assert await graphs.evaluate("() => window.reRenders") == 0
        assert await cancel.get_attribute("data-mark") == "kept"
        await cancel.click(timeout=UI_WAIT_MS)
        await graphs.wait_for_selector(
            f'#recent-graphs tr[data-graph="{graph_id}"][data-status=cancelled]',
            timeout=UI_WAIT_MS,
        )
        await device.wait_for_selector("#active-graph >> text=no graph running", timeout=UI_WAIT_MS)
        graph = await controller.graphs.engine.get(graph_id)
        assert graph is not None and graph["status"] == "cancelled"
        stepped.step()  # the task ends: recorded, and its page shows it
        await bars.wait_for_selector(
            f'tr[data-task="{task.id}"][data-state=complete]', timeout=UI_WAIT_MS
        )
    finally:
        await sim.close()


async def test_fleet_page_status_words_follow_a_running_task_in_place(
    browser: Browser, controller: Controller, tmp_path: Path, deadline: float
) -> None:
    """The Fleet page does not reload for tasks: the device's status words change in place
    from the task's progress messages (idle → running → completed), on the same cell."""
    sim = fleet_of(controller, generate(1, seed=33), tmp_path, PASSWORD)
    await sim.start()
    try:
        assert await sim.wait_connected(deadline) == 1
        runtime = sim.devices[0].runtime
        stepped = Stepped(runtime)
        page = await logged_in(browser, controller, "/")
        await live(page)
        await page.locator("#live").evaluate(SETTLED)
        words = f'td[data-st-of="{runtime.info.uuid}"]'
        assert await page.locator(words).inner_text() == "idle"
        await page.locator(words).evaluate("cell => { cell.dataset.mark = 'kept'; }")
        await controller.tasks.start(runtime.info.uuid, Stepped.METHOD, {})
        kept = f"{words}[data-mark=kept]"
        await page.wait_for_selector(f"{kept}:text-is('running')", timeout=UI_WAIT_MS)
        for _ in range(len(Stepped.PERCENTS) + 1):
            stepped.step()
        await page.wait_for_selector(f"{kept}:text-is('completed')", timeout=UI_WAIT_MS)
    finally:
        await sim.close()
