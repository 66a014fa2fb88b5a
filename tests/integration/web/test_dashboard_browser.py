"""The dashboard in a real browser (Debian's chromium through Playwright), as an operator
uses it: log in, watch devices join and leave, run a scan against the MES simulator,
accept a held key, and find that actions need the CSRF token and a live session."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import pytest
from tests.integration.controller.conftest import (
    PASSWORD,
    controller_settings,
    running_controller,
)

from hwfleet.cli.demo_session import mes_records
from hwfleet.controller.app import Controller
from hwfleet.sim.fleet import SimFleet
from hwfleet.sim.mes import MesSimulator, serve
from hwfleet.sim.profiles import Profile, generate

if TYPE_CHECKING:
    from playwright.async_api import Browser, Page, Response

PROFILE = generate(3, seed=21)
#: Browser waits: a page updates within a second of an event; leave room on a busy machine.
UI_WAIT_MS = 20_000


@pytest.fixture
async def mes() -> AsyncIterator[tuple[MesSimulator, str]]:
    sim = MesSimulator.from_profile(mes_records(PROFILE))
    async with serve(sim) as url:
        yield sim, url


@pytest.fixture
async def controller(tmp_path: Path, mes: tuple[MesSimulator, str]) -> AsyncIterator[Controller]:
    settings = controller_settings(
        tmp_path / "controller",
        mes=mes[1],
        scan_quiet_timeout=1.0,
        manual_approval=True,  # a device enrolling without the password waits for an operator
        heartbeat_interval=1.0,
        offline_after=3.0,
        log_level="warning",
    )
    async with running_controller(settings) as ctl:
        yield ctl


def fleet_of(controller: Controller, profile: Profile, tmp_path: Path, password: str) -> SimFleet:
    host, port = controller.gateway.address
    return SimFleet(
        profile,
        host,
        port,
        reconnect_min=0.05,
        reconnect_max=0.5,
        heartbeat=1.0,
        data_dir=str(tmp_path / "sim"),
        enroll_password=password,
    )


async def logged_in(browser: Browser, controller: Controller, path: str = "/") -> Page:
    context = await browser.new_context()  # its own cookies, shared by its tabs
    page = await context.new_page()
    await page.goto(controller.api_url + path)
    assert page.url.endswith("/login")
    await page.fill("#token", controller.operator_token)
    await page.press("#token", "Enter")  # the keyboard, as an operator would
    await page.wait_for_url(controller.api_url + "/")
    if path != "/":
        await page.goto(controller.api_url + path)
    return page


async def live(page: Page) -> None:
    """Wait until the page's SSE stream is open (htmx:sseOpen), so nothing is raced."""
    await page.wait_for_selector("body[data-live=open]", state="attached", timeout=UI_WAIT_MS)


async def test_devices_appear_live_and_one_goes_offline(
    browser: Browser, controller: Controller, tmp_path: Path, deadline: float
) -> None:
    page = await logged_in(browser, controller)
    console: list[str] = []
    page.on("console", lambda message: console.append(message.text))
    await live(page)
    assert await page.locator("tr[data-uuid]").count() == 0
    sim = fleet_of(controller, PROFILE, tmp_path, PASSWORD)
    await sim.start()
    try:
        assert await sim.wait_connected(deadline) == 3
        for device in sim.devices:  # no reload: the rows arrive over SSE
            row = f'tr[data-uuid="{device.runtime.info.uuid}"][data-state="online"]'
            await page.wait_for_selector(row, timeout=UI_WAIT_MS)
        assert "idle" in await page.inner_text("#devices")
        gone = sim.devices[0]
        await page.click(f'tr[data-uuid="{gone.runtime.info.uuid}"] a')
        await page.wait_for_selector("#device-state")
        await live(page)
        assert await page.inner_text("#device-state") == "online"
        gone.link.stop()  # the agent stops
        for task in gone.tasks:
            task.cancel()
        # (selectors, not page functions: the page's CSP forbids evaluating strings)
        await page.wait_for_selector("#device-state:text-is('offline')", timeout=UI_WAIT_MS)
        assert not [m for m in console if "Content Security Policy" in m], console
    finally:
        await sim.close()


async def test_scan_progress_reaches_the_end_and_the_mes_gets_its_documents(
    browser: Browser,
    controller: Controller,
    mes: tuple[MesSimulator, str],
    tmp_path: Path,
    deadline: float,
) -> None:
    sim = fleet_of(controller, PROFILE, tmp_path, PASSWORD)
    await sim.start()
    try:
        assert await sim.wait_connected(deadline) == 3
        page = await logged_in(browser, controller, "/scans")
        await live(page)
        await page.click("text=Start a scan of every device")
        await page.wait_for_url("**/scans/*")
        await live(page)
        await page.wait_for_selector("#scan-state:text-is('complete')", timeout=UI_WAIT_MS)
        assert await page.inner_text("#scan-count") == "3/3"
        assert await page.locator("#scan-results tbody tr").count() == 3
        # The deviceScan, Pair and notification posts, delivered by the outbox, shown live.
        delivered = page.locator("tr[data-delivery=delivered]")
        await delivered.nth(2).wait_for(timeout=UI_WAIT_MS)
        assert await delivered.count() == 3
        assert len(mes[0].posts) == 3
    finally:
        await sim.close()


async def test_accept_a_pending_key(
    browser: Browser, controller: Controller, tmp_path: Path, deadline: float
) -> None:
    page = await logged_in(browser, controller, "/keys")
    await live(page)
    held = fleet_of(controller, generate(1, seed=22), tmp_path, "")  # no password: held
    await held.start()
    try:
        pending = page.locator("tr[data-state=pending]")
        await pending.first.wait_for(timeout=UI_WAIT_MS)
        fingerprint = await pending.first.locator("code").inner_text()
        assert fingerprint.startswith("SHA256:") or len(fingerprint) > 20
        await pending.first.get_by_role("button", name=f"accept key {fingerprint}").click()
        await page.wait_for_selector("#action-result p", timeout=UI_WAIT_MS)
        assert "accepted" in await page.inner_text("#action-result"), await page.content()
        await page.wait_for_selector("tr[data-state=accepted]", timeout=UI_WAIT_MS)
        assert await held.wait_connected(deadline) == 1  # the device got its certificate
    finally:
        await held.close()


async def test_keyboard_focus_stays_on_its_button_across_a_region_reload(
    browser: Browser, controller: Controller, tmp_path: Path
) -> None:
    """An operator tabbing through the pending keys while the region reloads (a rack
    enrolling) keeps their place: the new copy of the focused button gets the focus."""
    page = await logged_in(browser, controller, "/keys")
    await live(page)
    held = fleet_of(controller, generate(2, seed=26), tmp_path, "")  # both held
    await held.start()
    try:
        pending = page.locator("tr[data-state=pending]")
        await pending.nth(1).wait_for(timeout=UI_WAIT_MS)
        label = "accept key " + await pending.nth(1).locator("code").inner_text()
        await page.get_by_role("button", name=label, exact=True).focus()
        await page.evaluate("() => { window.focusedBefore = document.activeElement; }")
        async with page.expect_response(is_reload, timeout=UI_WAIT_MS):
            await page.dispatch_event("body", "refresh")  # what a recorded event does
        # The swap replaced the button (the old element left the page); focus followed it.
        await page.wait_for_function(
            "() => !document.contains(window.focusedBefore)", timeout=UI_WAIT_MS
        )
        focused = await page.evaluate(
            "() => [document.activeElement.tagName, document.activeElement.getAttribute("
            "'aria-label'), document.activeElement === window.focusedBefore]"
        )
        assert focused == ["BUTTON", label, False]
    finally:
        await held.close()


#: Keys accepted in a row, and how long each press lasts (an operator's click is ~100 ms).
QUICK_KEYS = 5
PRESS_MS = 120


async def test_quick_accepts_while_the_region_reloads_are_all_kept(
    browser: Browser, controller: Controller, tmp_path: Path, deadline: float
) -> None:
    """Accept several held keys one after another while the live region keeps reloading
    (as it does while a rack enrolls): every click acts. Without the reload waiting for a
    press to end, the button pressed is replaced before its release and the click is lost."""
    from playwright.async_api import TimeoutError as PlaywrightTimeout

    page = await logged_in(browser, controller, "/keys")
    await live(page)
    posted: list[str] = []
    page.on("request", lambda r: posted.append(r.url) if r.method == "POST" else None)
    held = fleet_of(controller, generate(QUICK_KEYS, seed=24), tmp_path, "")  # all held
    await held.start()
    stop = asyncio.Event()

    async def reloads() -> None:
        """Reload the region again each time the last reload's answer arrives."""
        while not stop.is_set():
            async with page.expect_response(is_reload, timeout=UI_WAIT_MS):
                await page.dispatch_event("body", "refresh")  # what a recorded event does

    try:
        pending = page.locator("tr[data-state=pending]")
        await pending.nth(QUICK_KEYS - 1).wait_for(timeout=UI_WAIT_MS)
        fingerprints = await pending.locator("code").all_inner_texts()
        storm = asyncio.create_task(reloads())
        try:
            for fingerprint in fingerprints:  # no wait between them: each row is read at once
                accept = page.get_by_role("button", name=f"accept key {fingerprint}", exact=True)
                await accept.click(delay=PRESS_MS)
        finally:
            stop.set()
            await storm
        accepted = page.locator("tr[data-state=accepted]")
        try:
            await accepted.nth(QUICK_KEYS - 1).wait_for(state="attached", timeout=UI_WAIT_MS)
        except PlaywrightTimeout:
            lost = QUICK_KEYS - sum(url.endswith("/accept") for url in posted)
            pytest.fail(f"{lost} of {QUICK_KEYS} clicks on Accept were lost: posted {posted}")
        assert sum(url.endswith("/accept") for url in posted) == QUICK_KEYS, posted
        assert await held.wait_connected(deadline) == QUICK_KEYS
    finally:
        await held.close()


def is_reload(response: Response) -> bool:
    """The Keys page's live region reloading (a GET of the page itself)."""
    return response.request.method == "GET" and urlsplit(response.url).path == "/keys"


async def test_actions_run_then_need_the_csrf_token_and_a_live_session(
    browser: Browser, controller: Controller, tmp_path: Path, deadline: float
) -> None:
    sim = fleet_of(controller, generate(1, seed=23), tmp_path, PASSWORD)
    await sim.start()
    try:
        assert await sim.wait_connected(deadline) == 1
        uuid = sim.devices[0].runtime.info.uuid
        page = await logged_in(browser, controller, f"/devices/{uuid}")
        await live(page)
        await page.click("text=Ping")
        await page.wait_for_selector("#action-result .ok", timeout=UI_WAIT_MS)
        # A long command becomes a task; its row appears and ends without a reload.
        await page.fill("#method", "decom.qc")
        await page.fill("#params", '{"spec": {"min_memory_mb": 1}}')
        await page.press("#params", "Enter")
        await page.wait_for_selector("#action-result .ok >> text=started task", timeout=UI_WAIT_MS)
        task = page.locator("tr[data-task]")
        await task.first.wait_for(timeout=UI_WAIT_MS)
        await page.wait_for_selector("tr[data-task][data-state=complete]", timeout=UI_WAIT_MS)
        # The same browser (its session cookie) without the token: refused.
        refused = await page.request.post(f"{controller.api_url}/devices/{uuid}/ping")
        assert refused.status == 403
        # Logged out in another tab: this page's buttons no longer act, and lead to login.
        other = await page.context.new_page()
        await other.goto(f"{controller.api_url}/")
        await other.click("text=Log out")
        await other.wait_for_url("**/login")
        await page.click("text=Ping")
        await page.wait_for_url("**/login", timeout=UI_WAIT_MS)
        again = await page.request.post(
            f"{controller.api_url}/devices/{uuid}/ping", form={"csrf": "anything"}
        )
        assert again.status == 401
    finally:
        await sim.close()
