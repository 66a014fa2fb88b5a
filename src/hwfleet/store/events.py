"""Events: an append-only log of state changes; the id is the reader's cursor.

A reader pages forward (``after_id``, oldest first: following the log) or backward
(``before_id``/``newest_first``: the latest history first), optionally filtered by an
AMQP topic pattern. The pattern is applied before the page is cut: the database
narrows with a ``LIKE`` that every matching key satisfies (:func:`like_for_topic`),
and the exact topic rules then drop the rest, batch after batch until the page is full.
"""

from __future__ import annotations

import builtins
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from hwfleet.bus.routing import topic_matches
from hwfleet.store.base import AnyRow, Repository, check_limit
from hwfleet.store.models import events
from hwfleet.store.records import EventRecord


def _like_escape(word: str) -> str:
    return word.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def like_for_topic(pattern: str) -> str | None:
    """A SQL ``LIKE`` pattern (escape ``\\``) matched by every key ``pattern`` matches.

    ``*`` and ``#`` become ``%``, and so do the dots next to a ``#`` (it may match zero
    words: ``a.#`` matches ``a``). It can match more (``%`` also spans dots, and SQLite's
    LIKE ignores ASCII case): callers re-check with :func:`topic_matches`. None when
    no ``LIKE`` narrows it (``#``, ``*``).
    """
    words = pattern.split(".")
    like = ""
    for index, word in enumerate(words):
        if index:
            like += "%" if "#" in (word, words[index - 1]) else "."
        like += "%" if word in ("*", "#") else _like_escape(word)
    while "%%" in like:
        like = like.replace("%%", "%")
    return None if like == "%" else like


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

    async def add_many(
        self, items: Sequence[tuple[str, dict[str, Any], str | None]], *, at: datetime
    ) -> builtins.list[EventRecord]:
        """Insert ``(routing_key, payload, device_uuid)`` events, one statement; records by id.

        Each ``(routing_key, device_uuid)`` must be unique in ``items``: the rows come back
        in no promised order (SQLite cannot promise one without a statement per row), and
        that pair is how a returned id finds its item. Only the ids are read back.
        """
        if not items:
            return []
        stmt = sa.insert(events).returning(events.c.id, events.c.routing_key, events.c.device_uuid)
        params = [
            {"at": at, "routing_key": key, "device_uuid": device, "payload": payload}
            for key, payload, device in items
        ]
        payloads = {(key, device): payload for key, payload, device in items}
        records = [
            EventRecord(
                id=row[0],
                at=at,
                routing_key=row[1],
                device_uuid=row[2],
                payload=payloads[row[1], row[2]],
            )
            for row in await self._rows(stmt, params)
        ]
        return sorted(records, key=lambda r: r.id)

    async def list(
        self,
        *,
        after_id: int = 0,
        before_id: int | None = None,
        newest_first: bool = False,
        limit: int = 200,
        device_uuid: str | None = None,
        pattern: str = "#",
        since: datetime | None = None,
    ) -> builtins.list[EventRecord]:
        """Up to ``limit`` events whose key matches ``pattern``, with ``after_id < id``
        (and ``id < before_id``): oldest first, or newest first with ``newest_first``.

        Pass the page's last id as the next ``after_id`` (oldest first) or ``before_id``
        (newest first) to page on.
        """
        check_limit(limit)
        stmt = sa.select(events)
        if device_uuid is not None:
            stmt = stmt.where(events.c.device_uuid == device_uuid)
        if since is not None:
            stmt = stmt.where(events.c.at >= since)
        like = like_for_topic(pattern)
        if like is not None:
            stmt = stmt.where(events.c.routing_key.like(like, escape="\\"))
        everything = set(pattern.split(".")) == {"#"}
        order = events.c.id.desc() if newest_first else events.c.id
        batch = max(limit, 100)
        low, high = after_id, before_id
        found: builtins.list[EventRecord] = []
        while True:
            page = stmt.where(events.c.id > low)
            if high is not None:
                page = page.where(events.c.id < high)
            rows = await self._rows(page.order_by(order).limit(batch))
            for row in rows:
                if everything or topic_matches(pattern, row._mapping["routing_key"]):
                    found.append(to_event(row))
                    if len(found) == limit:
                        return found
            if len(rows) < batch:
                return found
            last = rows[-1]._mapping["id"]
            low, high = (low, last) if newest_first else (last, high)
