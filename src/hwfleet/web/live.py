"""The dashboard's live stream: one SSE connection per page, resumable, never silent.

``GET /live`` sends every event on the ``events`` exchange as an SSE event named by the
first word of its routing key (``device``, ``scan``, ``task``, ``enrollment`` …) with the
event row's id as the SSE id. Pages reload the regions those names touch. A reconnecting
browser sends ``Last-Event-ID`` (or the page's ``after`` cursor, the newest id when it was
rendered): the stream subscribes first, then sends what the store recorded after that id,
then the live copies it has not sent yet — nothing is missed. The replay is coalesced to
the newest event per name (each one only tells a page to reload). While a task, a scan,
an MES delivery or a task graph is in progress — which records no event per step — a
``progress`` event every :data:`TICK` seconds reloads progress bars. Comments keep
proxies from closing an idle stream, and a stream ends after :data:`LIFETIME` (the browser
reconnects and resumes) or once its session is logged out.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import TypeVar

from fastapi import APIRouter, Header, Query, Request
from sse_starlette import EventSourceResponse, ServerSentEvent

from hwfleet.api.deps import EventsDep, ScansDep, TasksDep
from hwfleet.api.services.events import EventsService
from hwfleet.api.services.scans import ScansService
from hwfleet.api.services.tasks import TasksService
from hwfleet.bus.base import Delivery
from hwfleet.web.auth import SessionDep, SessionsDep
from hwfleet.workflows.service import GraphService

router = APIRouter(include_in_schema=False)
T = TypeVar("T")

TICK = 2.0
COALESCE = 0.25
HEARTBEAT = 15
LIFETIME = 600.0
REPLAY_PAGE = 1000
#: Pages that have fallen further behind than this reload whole instead of replaying.
REPLAY_LIMIT = 50_000
RETRY_MS = 2000


def name_of(routing_key: str) -> str:
    return routing_key.split(".", 1)[0] or "event"


async def replay(events: EventsService, after: int) -> tuple[dict[str, int], int]:
    """The newest recorded id per event name after ``after``, and the newest id overall."""
    newest: dict[str, int] = {}
    last = after
    while last - after < REPLAY_LIMIT:
        page = await events.list_events(
            after=last, before=None, newest_first=False, limit=REPLAY_PAGE, device=None, pattern="#"
        )
        for row in page:
            newest[name_of(str(row["routing_key"]))] = int(row["id"])
            last = int(row["id"])
        if len(page) < REPLAY_PAGE:
            return newest, last
    newest["reload"] = last
    return newest, last


async def in_progress(
    tasks: TasksService, scans: ScansService, graphs: GraphService | None = None
) -> bool:
    """Whether anything is moving that records no event per step (a graph's task starting
    records none either: only its end does)."""
    if await tasks.list_tasks(device=None, active=True, limit=1):
        return True
    if graphs is not None and await graphs.engine.list(active_only=True, limit=1):
        return True
    recent = await scans.list_scans(1)
    if recent and recent[0].get("state") == "running":
        return True
    return bool(await scans.outbox("pending", 1))


def optional_service(request: Request, kind: type[T]) -> T | None:
    """The app's service of this type, or None on a server without it (the live stream
    still serves the other pages)."""
    for service in getattr(request.app.state, "services", ()):
        if isinstance(service, kind):
            return service
    return None


def resume_point(last_event_id: str | None, after: int | None) -> int | None:
    """Where to replay from: the browser's Last-Event-ID, else the page's cursor (0 on an
    empty log: replay it all), else nowhere (a client that asked for live events only)."""
    if last_event_id and last_event_id.strip().isdigit():
        return int(last_event_id.strip())
    return after


@router.get("/live")
async def live(
    request: Request,
    session: SessionDep,
    sessions: SessionsDep,
    events: EventsDep,
    tasks: TasksDep,
    scans: ScansDep,
    after: int | None = Query(None, ge=0),
    last_event_id: str | None = Header(None),
) -> EventSourceResponse:
    queue: asyncio.Queue[bytes] = asyncio.Queue(maxsize=10_000)
    graphs = optional_service(request, GraphService)

    async def on_event(delivery: Delivery) -> None:
        if queue.full():
            queue.get_nowait()  # a slow page loses the oldest copy; it reloads anyway
        queue.put_nowait(delivery.body)

    async def stream() -> AsyncIterator[ServerSentEvent]:
        subscription = await events.subscribe("#", on_event)
        try:
            yield ServerSentEvent(data="{}", event="hello", retry=RETRY_MS)
            start = resume_point(last_event_id, after)
            sent = 0
            if start is not None:
                newest, sent = await replay(events, start)
                for name, event_id in sorted(newest.items(), key=lambda item: item[1]):
                    yield ServerSentEvent(data="{}", event=name, id=str(event_id))
            ends = time.monotonic() + LIFETIME
            next_tick = 0.0
            while time.monotonic() < ends and not await request.is_disconnected():
                if not sessions.alive(session.sid):
                    return  # logged out (or expired): the reconnect gets a 401

                if time.monotonic() >= next_tick:
                    next_tick = time.monotonic() + TICK
                    if await in_progress(tasks, scans, graphs):
                        yield ServerSentEvent(data="{}", event="progress")
                batch = await gather(queue, max(0.0, next_tick - time.monotonic()), sent)
                for name, event_id in sorted(batch.items(), key=lambda item: item[1]):
                    sent = max(sent, event_id)
                    yield ServerSentEvent(data="{}", event=name, id=str(event_id))
        finally:
            await subscription.cancel()

    return EventSourceResponse(stream(), ping=HEARTBEAT, headers={"Cache-Control": "no-store"})


async def gather(queue: asyncio.Queue[bytes], wait: float, sent: int) -> dict[str, int]:
    """The newest new event id per name: waits up to ``wait`` for a first event, then
    :data:`COALESCE` more for the ones right behind it (a fleet joining sends thousands;
    a page reloads once for them, not once each)."""
    batch: dict[str, int] = {}
    deadline = time.monotonic() + wait
    while True:
        try:
            async with asyncio.timeout(max(0.0, deadline - time.monotonic())):
                body = await queue.get()
        except TimeoutError:
            return batch
        event = parse(body)
        if event is not None and event[0] > sent:  # else sent already, from the store
            batch[event[1]] = max(event[0], batch.get(event[1], 0))
            if len(batch) == 1 and deadline - time.monotonic() > COALESCE:
                deadline = time.monotonic() + COALESCE


def parse(body: bytes) -> tuple[int, str] | None:
    """The (id, name) of an event's bus copy; None for one without a recorded row."""
    try:
        message = json.loads(body)
    except ValueError:
        return None
    if not isinstance(message, dict):
        return None
    event_id, key = message.get("id"), message.get("key")
    if not isinstance(event_id, int) or not isinstance(key, str):
        return None
    return event_id, name_of(key)
