"""The dashboard's live stream: one SSE connection per page, resumable, quiet when idle.

``GET /live`` sends every event on the ``events`` exchange as an SSE event named by the
first word of its routing key (``device``, ``scan``, ``task``, ``enrollment`` …) with the
event row's id as the SSE id; pages reload the regions those names touch. A reconnecting
browser sends ``Last-Event-ID`` (or the page's ``after`` cursor, the newest id when it was
rendered): the stream subscribes first, then sends what the store recorded after that id,
then the live copies it has not sent yet — nothing is missed. The replay is coalesced to
the newest event per name (each one only tells a page to reload).

What records no event per step travels on the ``progress`` exchange and is sent with its
data and without an id (it is not replayed: the state itself is in the store, and the
next message corrects a bar): ``taskprogress`` (a task's state, percent and message) and
``graphprogress`` (a graph task started, a graph paused or resumed), which the page's
script applies to the one row they name, and ``outbox`` (an MES delivery changed), which
reloads the outbox tables. Progress is not replayed: when a stream starts while
something is in progress, it sends ``catchup`` once, and pages showing progress reload
(what moved between their render, or the last stream's end, and now). Nothing is sent
on a timer but comments that keep proxies from closing an idle stream; a stream ends
after :data:`LIFETIME` (the browser reconnects and resumes) or once its session is
logged out, on any replica.
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

#: The exchange of unrecorded progress (hwfleet.controller.events.PROGRESS_EXCHANGE).
PROGRESS = "progress"
COALESCE = 0.25
HEARTBEAT = 15
LIFETIME = 600.0
#: How often an open stream asks the store whether its session still exists (a logout on
#: another replica ends it within this).
SESSION_CHECK = 10.0
REPLAY_PAGE = 1000
#: Pages that have fallen further behind than this reload whole instead of replaying.
REPLAY_LIMIT = 50_000
RETRY_MS = 2000
#: Put on a stream's queue to wake it (carries nothing to send).
WAKE = Delivery(exchange="", routing_key="", body=b"")
#: SSE event names of progress messages, by the first word of their routing key.
PROGRESS_NAMES = {"task": "taskprogress", "graph": "graphprogress", "outbox": "outbox"}


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
    """Whether anything is moving whose steps record no event (a task's progress, a graph
    task starting, an MES delivery): a page rendered just before its stream connected may
    have missed one, so the stream's start tells it to reload once (``catchup``)."""
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
    queue: asyncio.Queue[tuple[bool, Delivery]] = asyncio.Queue(maxsize=10_000)

    def keep(progress: bool, delivery: Delivery) -> None:
        if queue.full():
            queue.get_nowait()  # a slow page loses the oldest copy; it reloads anyway
        queue.put_nowait((progress, delivery))

    async def on_event(delivery: Delivery) -> None:
        keep(False, delivery)

    async def on_progress(delivery: Delivery) -> None:
        keep(True, delivery)

    logged_out = asyncio.Event()

    def log_out() -> None:  # logged out on this replica: wake the stream to end it now
        logged_out.set()
        keep(False, WAKE)

    async def stream() -> AsyncIterator[ServerSentEvent]:
        subscriptions = [
            await events.subscribe("#", on_event),
            await events.bus.subscribe(PROGRESS, "#", on_progress),
        ]
        unwatch = sessions.watch(session.sid, log_out)
        try:
            yield ServerSentEvent(data="{}", event="hello", retry=RETRY_MS)
            start = resume_point(last_event_id, after)
            sent = 0
            if start is not None:
                newest, sent = await replay(events, start)
                for name, event_id in sorted(newest.items(), key=lambda item: item[1]):
                    yield ServerSentEvent(data="{}", event=name, id=str(event_id))
            if await in_progress(tasks, scans, optional_service(request, GraphService)):
                # Progress is not replayed: what moved between the page's render (or the
                # last stream's end) and now is caught up by one reload.
                yield ServerSentEvent(data="{}", event="catchup")
            ends = time.monotonic() + LIFETIME
            next_check = time.monotonic() + SESSION_CHECK
            while time.monotonic() < ends and not await request.is_disconnected():
                if logged_out.is_set():
                    return
                if time.monotonic() >= next_check:
                    if not await sessions.alive(session.sid):
                        return  # logged out elsewhere (or expired): the reconnect is refused
                    next_check = time.monotonic() + SESSION_CHECK
                batch = await gather(queue, max(0.0, next_check - time.monotonic()), sent)
                for name, event_id in sorted(batch.events.items(), key=lambda item: item[1]):
                    sent = max(sent, event_id)
                    yield ServerSentEvent(data="{}", event=name, id=str(event_id))
                for name, data in batch.progress.values():
                    yield ServerSentEvent(data=data, event=name)
        finally:
            unwatch()
            for subscription in subscriptions:
                await subscription.cancel()

    return EventSourceResponse(stream(), ping=HEARTBEAT, headers={"Cache-Control": "no-store"})


class Batch:
    """What one wait collected: the newest event id per name, and the newest progress
    message per routing key (a task reporting ten times in a burst is sent once)."""

    __slots__ = ("events", "progress")

    def __init__(self) -> None:
        self.events: dict[str, int] = {}
        self.progress: dict[str, tuple[str, str]] = {}

    def __len__(self) -> int:
        return len(self.events) + len(self.progress)

    def add(self, progress: bool, delivery: Delivery, sent: int) -> None:
        if progress:
            name = PROGRESS_NAMES.get(name_of(delivery.routing_key))
            if name is not None:
                self.progress[delivery.routing_key] = (name, progress_data(delivery.body))
            return
        event = parse(delivery.body)
        if event is not None and event[0] > sent:  # else sent already, from the store
            self.events[event[1]] = max(event[0], self.events.get(event[1], 0))


def progress_data(body: bytes) -> str:
    """A progress message's body as the SSE data: a JSON object, or ``{}``."""
    try:
        message = json.loads(body)
    except ValueError:
        return "{}"
    return json.dumps(message, separators=(",", ":")) if isinstance(message, dict) else "{}"


async def gather(queue: asyncio.Queue[tuple[bool, Delivery]], wait: float, sent: int) -> Batch:
    """Waits up to ``wait`` for a first message, then :data:`COALESCE` more for the ones
    right behind it (a fleet joining sends thousands; a page reloads once for them)."""
    batch = Batch()
    deadline = time.monotonic() + wait
    while True:
        try:
            async with asyncio.timeout(max(0.0, deadline - time.monotonic())):
                progress, delivery = await queue.get()
        except TimeoutError:
            return batch
        if delivery is WAKE:
            return batch
        batch.add(progress, delivery, sent)
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
