"""``GET /api/v1/events`` and ``hwfleet events``: the latest matches, whatever the log's size.

Issue 11 §5: the page limit was applied before the pattern (short or empty pages),
and the CLI fetched the oldest 5,000 events and showed their tail, so past 5,000
events it went stale and ``--pattern`` missed every newer match.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import httpx
import pytest
from tests.integration.controller.conftest import HWFLEET, cli, cli_env

from hwfleet.controller.app import Controller
from hwfleet.controller.events import utcnow


@pytest.fixture
async def api(controller: Controller) -> AsyncIterator[httpx.AsyncClient]:
    headers = {"Authorization": f"Bearer {controller.operator_token}"}
    async with httpx.AsyncClient(base_url=controller.api_url, headers=headers, timeout=30) as http:
        yield http


async def record(controller: Controller, noise: int, wanted_every: int) -> list[str]:
    """``noise`` events, with a ``wanted.<i>`` one after every ``wanted_every``-th."""
    wanted = []
    async with controller.store.tx() as tx:
        for i in range(noise):
            await tx.events.add(f"noise.{i}", {"i": i}, at=utcnow())
            if i % wanted_every == wanted_every - 1:
                await tx.events.add(f"wanted.{i}", {"i": i}, at=utcnow())
                wanted.append(f"wanted.{i}")
    return wanted


async def test_the_pattern_is_applied_before_the_page_is_cut(
    controller: Controller, api: httpx.AsyncClient
) -> None:
    wanted = await record(controller, 600, 100)
    page = (await api.get("/api/v1/events", params={"pattern": "wanted.*", "limit": 4})).json()
    assert [e["routing_key"] for e in page] == wanted[::-1][:4]  # newest first
    older = await api.get(
        "/api/v1/events", params={"pattern": "wanted.*", "limit": 4, "before": page[-1]["id"]}
    )
    assert [e["routing_key"] for e in older.json()] == wanted[::-1][4:]
    forward = await api.get("/api/v1/events", params={"pattern": "wanted.#", "after": 0})
    assert [e["routing_key"] for e in forward.json()] == wanted
    both = await api.get("/api/v1/events", params={"after": 1, "before": 9})
    assert both.status_code == 422 and "not both" in both.json()["detail"]


async def test_cli_shows_the_newest_matches_past_five_thousand_events(
    controller: Controller,
) -> None:
    wanted = await record(controller, 5_400, 1_000)
    code, out, err = await cli(
        controller, "events", "--pattern", "wanted.#", "--limit", "3", "--json"
    )
    assert code == 0, err
    assert [e["routing_key"] for e in json.loads(out)] == wanted[-3:]  # oldest of them first
    code, out, err = await cli(controller, "events", "--limit", "5001", "--json")
    assert code == 0, err
    rows = json.loads(out)
    assert len(rows) == 5001 and rows[-1]["routing_key"] == "noise.5399"
    assert [r["id"] for r in rows] == sorted(r["id"] for r in rows)


async def test_cli_limit_zero_shows_none_and_a_negative_limit_is_refused(
    controller: Controller,
) -> None:
    await record(controller, 3, 1)
    code, out, _ = await cli(controller, "events", "--limit", "0", "--json")
    assert code == 0 and json.loads(out) == []
    code, out, err = await cli(controller, "events", "--limit", "-1")
    assert code == 2 and out == ""
    assert "--limit" in err and "-1" in err


async def test_follow_prints_the_history_then_new_events(controller: Controller) -> None:
    await record(controller, 20, 10)
    proc = await asyncio.create_subprocess_exec(
        *HWFLEET,
        *("events", "--follow", "--json", "--pattern", "wanted.#", "--limit", "1"),
        env=cli_env(controller),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stdout is not None
    try:
        async with asyncio.timeout(30):
            first = json.loads(await proc.stdout.readline())
            assert first["routing_key"] == "wanted.19"
            await controller.events.emit("noise.late", {})
            await controller.events.emit("wanted.late", {"late": True})
            second = json.loads(await proc.stdout.readline())
        assert second["key"] == "wanted.late" and second["data"] == {"late": True}
    finally:
        proc.terminate()
        await proc.wait()
