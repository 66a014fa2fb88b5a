"""Pollers as the API and the bus see them: list, change, latest data (``requestPollerCache``)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from hwfleet.bus.base import Bus, Subscription
from hwfleet.store import Store
from hwfleet.store.pollers import PollerRecord, PollerRepository
from hwfleet.types import JsonObject


def poller_body(r: PollerRecord) -> dict[str, Any]:
    """A poller without its data (which can be large): ``/pollers/{id}/data`` has that."""
    return {
        "id": r.id,
        "node": r.node,
        "type": r.type,
        "interval": r.interval,
        "paused": r.paused,
        "rules": r.rules,
        "next_run_at": r.next_run_at.isoformat(),
        "failures": r.failures,
        "last_error": r.last_error,
        "last_polled_at": r.last_polled_at.isoformat() if r.last_polled_at else None,
        "leased_by": r.lease_owner,
    }


def data_body(r: PollerRecord) -> dict[str, Any]:
    return {
        "id": r.id,
        "node": r.node,
        "type": r.type,
        "at": r.last_polled_at.isoformat() if r.last_polled_at else None,
        "failures": r.failures,
        "last_error": r.last_error,
        "data": r.last_data,
    }


class PollerAdmin:
    """Reads and changes poller rows; answers ``methods.requestPollerCache`` on ``task``."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.on_change: Callable[[], None] = lambda: None

    async def list(self, node: str | None = None) -> list[dict[str, Any]]:
        async with self.store.tx(readonly=True) as tx:
            return [poller_body(r) for r in await PollerRepository(tx.conn).list(node)]

    async def get(self, poller_id: int) -> dict[str, Any] | None:
        async with self.store.tx(readonly=True) as tx:
            r = await PollerRepository(tx.conn).get(poller_id)
        return None if r is None else poller_body(r)

    async def data(self, poller_id: int) -> dict[str, Any] | None:
        async with self.store.tx(readonly=True) as tx:
            r = await PollerRepository(tx.conn).get(poller_id)
        return None if r is None else data_body(r)

    async def update(self, poller_id: int, changes: dict[str, Any]) -> dict[str, Any] | None:
        if "interval" in changes or changes.get("paused") is False:
            # A new schedule starts now (an operator who shortens an hour-long backoff
            # wants a poll now, not in an hour).
            changes = {**changes, "next_run_at": datetime.now(UTC)}
        async with self.store.tx() as tx:
            r = await PollerRepository(tx.conn).update(poller_id, **changes)
        self.on_change()
        return None if r is None else poller_body(r)

    async def request_cache(self, params: JsonObject) -> JsonObject:
        """``{"pollerId"}`` or ``{"node", "type"?}`` → ``{"pollers": [latest data, ...]}``."""
        poller_id = params.get("pollerId", params.get("id"))
        node = params.get("node")
        if poller_id is None and not isinstance(node, str):
            raise ValueError("requestPollerCache needs 'pollerId' or 'node'")
        if poller_id is not None:
            if not isinstance(poller_id, int) or isinstance(poller_id, bool):
                raise ValueError("'pollerId' must be an integer")
            found = await self.data(poller_id)
            return {"pollers": [] if found is None else [found]}
        async with self.store.tx(readonly=True) as tx:
            rows = await PollerRepository(tx.conn).list(node if isinstance(node, str) else None)
        kind = params.get("type")
        return {"pollers": [data_body(r) for r in rows if kind is None or r.type == kind]}

    async def serve(self, bus: Bus) -> Subscription:
        # Its own server group: other services answer other methods on the task exchange.
        serve: Any = bus.serve  # both buses take ``queue``; the abstract signature does not
        sub: Subscription = await serve(
            "task", {"requestPollerCache": self.request_cache}, queue="oob.poller-cache"
        )
        return sub
