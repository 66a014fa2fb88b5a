"""Events as the API sees them: the recorded history, the live bus, and recording new ones."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from hwfleet.api.convert import to_json
from hwfleet.api.ports import EventSink
from hwfleet.bus.base import Bus, Handler, Subscription
from hwfleet.store import Store

EVENTS_EXCHANGE = "events"


class EventsService:
    """The store's event rows, subscriptions to the ``events`` exchange, and ``emit``."""

    def __init__(self, store: Store, bus: Bus, sink: EventSink) -> None:
        self.store = store
        self.bus = bus
        self.sink = sink

    async def list_events(
        self,
        *,
        after: int,
        before: int | None,
        newest_first: bool,
        limit: int,
        device: str | None,
        pattern: str,
        since: datetime | None = None,
    ) -> list[dict[str, Any]]:
        async with self.store.tx(readonly=True) as tx:
            rows = await tx.events.list(
                after_id=after,
                before_id=before,
                newest_first=newest_first,
                limit=limit,
                device_uuid=device,
                pattern=pattern,
                since=since,
            )
        return [to_json(r) for r in rows]

    async def subscribe(self, pattern: str, handler: Handler) -> Subscription:
        """A private copy of every live event whose key matches ``pattern``."""
        return await self.bus.subscribe(EVENTS_EXCHANGE, pattern, handler)

    async def emit(
        self, routing_key: str, payload: dict[str, Any], *, device_uuid: str | None = None
    ) -> None:
        await self.sink.emit(routing_key, payload, device_uuid=device_uuid)
