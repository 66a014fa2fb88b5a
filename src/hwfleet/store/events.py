"""Events: an append-only log of state changes; the id is the reader's cursor."""

from __future__ import annotations

import builtins
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from hwfleet.store.base import AnyRow, Repository, check_limit
from hwfleet.store.models import events
from hwfleet.store.records import EventRecord


def to_event(row: AnyRow) -> EventRecord:
    m = row._mapping
    return EventRecord(
        id=m["id"],
        at=m["at"],
        routing_key=m["routing_key"],
        device_uuid=m["device_uuid"],
        payload=m["payload"],
    )


class EventRepository(Repository):
    """``tx.events``."""

    __slots__ = ()

    async def add(
        self,
        routing_key: str,
        payload: dict[str, Any],
        *,
        device_uuid: str | None = None,
        at: datetime,
    ) -> EventRecord:
        if not routing_key:
            raise ValueError("an event needs a routing key")
        stmt = (
            sa.insert(events)
            .values(at=at, routing_key=routing_key, device_uuid=device_uuid, payload=payload)
            .returning(*events.c)
        )
        row = await self._row(stmt)
        assert row is not None
        return to_event(row)

    async def list(
        self, *, after_id: int = 0, limit: int = 200, device_uuid: str | None = None
    ) -> builtins.list[EventRecord]:
        """Events with id greater than ``after_id``, oldest first: pass the last id to page on."""
        stmt = sa.select(events).where(events.c.id > after_id)
        if device_uuid is not None:
            stmt = stmt.where(events.c.device_uuid == device_uuid)
        rows = await self._rows(stmt.order_by(events.c.id).limit(check_limit(limit)))
        return [to_event(row) for row in rows]
