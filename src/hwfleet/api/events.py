"""Events: the recorded history, and a live stream (server-sent events)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Depends, Query, Request
from sse_starlette.sse import EventSourceResponse

from hwfleet.api.auth import require_token
from hwfleet.api.convert import to_json
from hwfleet.api.schemas import Event
from hwfleet.bus.routing import topic_matches

router = APIRouter(prefix="/api/v1", tags=["events"], dependencies=[Depends(require_token)])


@router.get("/events", response_model=list[Event])
async def list_events(
    request: Request,
    after: int = Query(0, ge=0),
    limit: int = Query(200, ge=1, le=5000),
    pattern: str = "#",
    device: str | None = None,
) -> list[dict[str, Any]]:
    async with request.app.state.ctl.store.tx() as tx:
        rows = await tx.events.list(after_id=after, limit=limit, device_uuid=device)
    return [to_json(r) for r in rows if topic_matches(pattern, r.routing_key)]


@router.get("/events/stream")
async def stream_events(
    request: Request, pattern: str = "#", after: int = Query(0, ge=0)
) -> EventSourceResponse:
    """Live events from the ``events`` exchange as they are published."""
    bus = request.app.state.ctl.bus
    queue: asyncio.Queue[bytes] = asyncio.Queue(maxsize=10_000)

    async def on_event(delivery: Any) -> None:
        if queue.full():
            queue.get_nowait()  # a slow reader loses the oldest, never blocks the bus
        queue.put_nowait(delivery.body)

    async def generate() -> AsyncIterator[dict[str, str]]:
        subscription = await bus.subscribe("events", pattern, on_event)
        try:
            if after:
                for row in await list_events(request, after=after, limit=5000, pattern=pattern):
                    yield {"event": "event", "data": json.dumps(row)}
            while not await request.is_disconnected():
                try:
                    async with asyncio.timeout(15):
                        body = await queue.get()
                except TimeoutError:
                    yield {"event": "keepalive", "data": "{}"}
                    continue
                yield {"event": "event", "data": body.decode()}
        finally:
            await subscription.cancel()

    return EventSourceResponse(generate())
