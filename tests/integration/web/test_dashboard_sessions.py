"""Dashboard sessions live in the store: two controllers on one PostgreSQL share them (a
logout on one is refused on the other, and ends the other's open live stream), and a
restarted controller keeps a logged-in browser logged in."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from tests.integration.controller.conftest import controller_settings, running_controller
from tests.integration.web.conftest import log_in

from hwfleet.web import live
from hwfleet.web.auth import COOKIE


def with_cookie(base_url: str, sid: str) -> httpx.AsyncClient:
    """A client on another replica (or the restarted controller) holding the same cookie."""
    client = httpx.AsyncClient(base_url=base_url, timeout=20)
    client.cookies.set(COOKIE, sid)
    return client


async def test_two_replicas_share_sessions_and_a_logout(
    tmp_path: Path, pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(live, "SESSION_CHECK", 0.2)  # the open stream notices soon
    data = tmp_path / "controller"  # one data dir: the replicas share the operator token
    async with (
        running_controller(controller_settings(data, db=pg_url, replica_id="a")) as a,
        running_controller(controller_settings(data, db=pg_url, replica_id="b")) as b,
        httpx.AsyncClient(base_url=a.api_url, timeout=20) as on_a,
    ):
        csrf = await log_in(on_a, a.operator_token)
        sid = on_a.cookies[COOKIE]
        async with with_cookie(b.api_url, sid) as on_b:
            fleet = await on_b.get("/")
            assert fleet.status_code == 200 and f'value="{csrf}"' in fleet.text
            async with on_b.stream("GET", "/live", params={"after": 0}) as stream:
                lines = stream.aiter_lines()
                assert await anext(lines) == "event: hello"
                out = await on_a.post("/logout", data={"csrf": csrf})
                assert out.status_code == 303
                async for _ in lines:
                    pass  # replica b ends the stream once it sees the session gone
            assert (await on_b.get("/")).headers.get("location") == "/login"
            refused = await on_b.post(
                "/scans", headers={"HX-Request": "true", "X-CSRF-Token": csrf}
            )
            assert refused.status_code == 401
            again = await on_b.get("/live", params={"after": 0})  # a reconnect: no stream
            assert again.status_code == 303 and again.headers["location"] == "/login"


async def test_a_restart_keeps_the_session(tmp_path: Path) -> None:
    settings = controller_settings(tmp_path / "controller")
    async with (
        running_controller(settings) as first,
        httpx.AsyncClient(base_url=first.api_url, timeout=20) as client,
    ):
        csrf = await log_in(client, first.operator_token)
        sid = client.cookies[COOKIE]
    async with running_controller(settings) as second, with_cookie(second.api_url, sid) as again:
        page = await again.get("/keys")
        assert page.status_code == 200 and f'value="{csrf}"' in page.text
        logout = await again.post("/logout", data={"csrf": csrf})  # the same CSRF token works
        assert logout.status_code == 303 and logout.headers["location"] == "/login"
        assert (await again.get("/keys")).headers.get("location") == "/login"
