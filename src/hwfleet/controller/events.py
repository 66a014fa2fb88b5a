"""Every state change becomes an event row (the record) and a bus message (the notification)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from hwfleet.types import utcnow

if TYPE_CHECKING:
    from hwfleet.bus.base import Bus
    from hwfleet.store import EventRecord, Store

__all__ = ["EventPublisher", "utcnow"]  # utcnow: many modules import it from here

log = logging.getLogger(__name__)
#: Where :meth:`EventPublisher.progress` publishes (docs/dashboard.md).
PROGRESS_EXCHANGE = "progress"


class EventPublisher:
    """Writes the event row first, then announces it on the ``events`` exchange."""

    def __init__(self, store: Store, bus: Bus) -> None:
        self._store = store
        self._bus = bus

    async def emit(
        self, routing_key: str, payload: dict[str, Any], *, device_uuid: str | None = None
    ) -> None:
        async with self._store.tx() as tx:
            record = await tx.events.add(routing_key, payload, device_uuid=device_uuid, at=utcnow())
        await self.announce(routing_key, payload, event_id=record.id, at=record.at)

    async def announce(
        self, routing_key: str, payload: dict[str, Any], *, event_id: int | None, at: datetime
    ) -> None:
        """Publish an event already recorded (in the caller's own transaction)."""
        body = {"id": event_id, "at": at.isoformat(), "key": routing_key, "data": payload}
        try:
            # The row is the record (ids are a cursor to catch up from); the bus copy is a
            # notification, so it skips the broker's confirm (40% of a publish's CPU).
            await self._bus.publish("events", routing_key, body, confirm=False)
        except Exception:  # the row is the record; a bus hiccup must not fail the change
            log.exception("could not publish event %s", routing_key)

    async def announce_many(self, records: Sequence[EventRecord]) -> None:
        """Publish events already recorded, in order, in as few writes as the bus allows."""
        messages = [
            (
                r.routing_key,
                {"id": r.id, "at": r.at.isoformat(), "key": r.routing_key, "data": r.payload},
            )
            for r in records
        ]
        try:
            await self._bus.notify_many("events", messages)
        except Exception:  # the rows are the record; a bus hiccup must not fail the change
            log.exception("could not publish %d events", len(messages))

    async def progress(self, routing_key: str, payload: dict[str, Any]) -> None:
        """Announce moment-to-moment progress on the ``progress`` exchange: no row (the
        state itself is in the store), for dashboards to update a bar in place. A lost
        copy only delays a bar until the next one, so it never fails the caller."""
        try:
            await self._bus.publish(PROGRESS_EXCHANGE, routing_key, payload, confirm=False)
        except Exception:
            log.exception("could not publish progress %s", routing_key)
