"""Events: the recorded history, and a live stream (server-sent events)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request, status
from sse_starlette.sse import EventSourceResponse

from hwfleet.api.auth import require_token
from hwfleet.api.deps import EventsDep
from hwfleet.api.schemas import Event
from hwfleet.api.services.events import EventsService
from hwfleet.api.services.history import since_time
from hwfleet.bus.base import Delivery

router = APIRouter(prefix="/api/v1", tags=["events"], dependencies=[Depends(require_token)])


#: The largest page of ``GET /events``.
MAX_PAGE = 5000


@router.get("/events", response_model=list[Event])
async def list_events(
    events: EventsDep,
    after: int | None = Query(None, ge=0, description="oldest first, from after this id"),
    before: int | None = Query(None, ge=1, description="newest first, from before this id"),
    limit: int = Query(200, ge=1, le=MAX_PAGE),
    pattern: str = Query("#", description="routing-key pattern: * one word, # any words"),
    device: str | None = None,
    since: str | None = Query(None, description="only events since: 1h, 30m, or an ISO time"),
) -> list[dict[str, Any]]:
    """Recorded events whose key matches ``pattern`` (filtered before the page is cut).

    By default (or with ``before``) the newest first: pass the last id of a page as
    ``before`` for the next, older one. With ``after`` the oldest first, from that
    cursor on: pass the last id as the next ``after`` to follow the log.
    """
    if after is not None and before is not None:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT, "give either 'after' or 'before', not both"
        )
    return await events.list_events(
        after=after or 0,
        before=before,
        newest_first=after is None,
        limit=limit,
        device=device,
        pattern=pattern,
        since=since_time(since),
    )


async def _history(
    events: EventsService, pattern: str, after: int
) -> AsyncIterator[dict[str, Any]]:
    """Every recorded event after ``after`` matching ``pattern``, oldest first, page by page."""
    while True:
        page = await events.list_events(
            after=after,
            before=None,
            newest_first=False,
            limit=MAX_PAGE,
            device=None,
            pattern=pattern,
        )
        for row in page:
            yield row
        if len(page) < MAX_PAGE:
            return
        after = page[-1]["id"]


@router.get("/events/stream")
async def stream_events(
    request: Request, events: EventsDep, pattern: str = "#", after: int = Query(0, ge=0)
) -> EventSourceResponse:
    """Live events from the ``events`` exchange as they are published.

    With ``after``, first every recorded event after that id (the stream subscribes
    before it reads them, and skips live copies of events it has already sent), so a
    client that printed history up to ``after`` misses nothing in between.
    """
    queue: asyncio.Queue[bytes] = asyncio.Queue(maxsize=10_000)

    async def on_event(delivery: Delivery) -> None:
        if queue.full():
            queue.get_nowait()  # a slow reader loses the oldest, never blocks the bus
        queue.put_nowait(delivery.body)

    async def generate() -> AsyncIterator[dict[str, str]]:
        subscription = await events.subscribe(pattern, on_event)
        sent = 0
        try:
            if after:
                async for row in _history(events, pattern, after):
                    sent = row["id"]
                    yield {"event": "event", "data": json.dumps(row)}
            while not await request.is_disconnected():
                try:
                    async with asyncio.timeout(15):
                        body = await queue.get()
                except TimeoutError:
                    yield {"event": "keepalive", "data": "{}"}
                    continue
                event_id = _event_id(body)
                if event_id is not None and event_id <= sent:
                    continue  # published while the history was being sent: sent already
                yield {"event": "event", "data": body.decode()}
        finally:
            await subscription.cancel()

    return EventSourceResponse(generate())


def _event_id(body: bytes) -> int | None:
    """The event row's id a bus copy carries (None for one without a row)."""
    try:
        event_id = json.loads(body).get("id")
    except (ValueError, AttributeError):
        return None
    return event_id if isinstance(event_id, int) else None
