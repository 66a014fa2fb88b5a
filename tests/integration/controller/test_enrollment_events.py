"""Enrollment decisions are announced on the bus as the rows the store recorded."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from tests.integration.controller.conftest import connected_fleet

from hwfleet.bus import Delivery
from hwfleet.controller.app import Controller
from hwfleet.sim.profiles import generate


async def test_an_enrollment_event_carries_its_row_id(
    controller: Controller, deadline: float, tmp_path: Path
) -> None:
    announced: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

    async def on_event(delivery: Delivery) -> None:
        announced.put_nowait(json.loads(delivery.body))

    await controller.bus.subscribe("events", "enrollment.#", on_event)
    async with connected_fleet(controller, generate(1, seed=5), 5, tmp_path, deadline) as sim:
        async with asyncio.timeout(10):
            event = await announced.get()
    async with controller.store.tx(readonly=True) as tx:
        rows = [e for e in await tx.events.list() if e.routing_key.startswith("enrollment.")]
    assert [(r.id, r.routing_key) for r in rows] == [(event["id"], event["key"])]
    assert event["key"] == f"enrollment.accepted.{sim.devices[0].runtime.info.uuid}"
