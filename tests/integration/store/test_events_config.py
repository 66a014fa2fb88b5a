"""tx.events (an id-cursor log) and tx.config (JSON values by key)."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
import sqlalchemy as sa

from hwfleet.store import Store
from hwfleet.store.models import events


async def test_events_page_by_id_in_ascending_order(store: Store, now: datetime) -> None:
    async with store.tx() as tx:
        added = [
            await tx.events.add(
                f"device.online.u-{i % 2}",
                {"i": i, "nested": {"ok": True}},
                device_uuid=f"u-{i % 2}",
                at=now + timedelta(seconds=i),
            )
            for i in range(7)
        ]
        await tx.events.add("scan.started.1", {"operationid": 1}, at=now)
    ids = [e.id for e in added]
    assert ids == sorted(ids) and len(set(ids)) == 7
    assert added[0].payload == {"i": 0, "nested": {"ok": True}}
    assert added[3].at == now + timedelta(seconds=3)

    async with store.tx() as tx:
        first = await tx.events.list(limit=3)
        rest = await tx.events.list(after_id=first[-1].id)
        u1 = await tx.events.list(device_uuid="u-1")
    assert [e.id for e in first] == ids[:3]
    assert [e.payload.get("i") for e in rest] == [3, 4, 5, 6, None]
    assert rest[-1].device_uuid is None and rest[-1].routing_key == "scan.started.1"
    assert [e.payload["i"] for e in u1] == [1, 3, 5]


async def test_event_ids_are_not_reused_after_deleting_the_newest(
    store: Store, now: datetime
) -> None:
    async with store.tx() as tx:
        first = await tx.events.add("a", {}, at=now)
        second = await tx.events.add("b", {}, at=now)
        await tx.conn.execute(sa.delete(events).where(events.c.id == second.id))
        third = await tx.events.add("c", {}, at=now)
    # A reader holding cursor second.id must still see "c".
    assert third.id > second.id > first.id


async def test_config_set_get_all(store: Store, now: datetime) -> None:
    async with store.tx() as tx:
        assert await tx.config.get("scan.quiet_timeout") is None
        await tx.config.set("scan.quiet_timeout", 10.5, now)
        await tx.config.set("mes", {"base": "http://127.0.0.1:9"}, now)
        await tx.config.set("flags", [1, "two", None], now)
    async with store.tx() as tx:
        await tx.config.set("scan.quiet_timeout", 3, now + timedelta(seconds=1))
        assert await tx.config.get("scan.quiet_timeout") == 3
        assert await tx.config.get("mes") == {"base": "http://127.0.0.1:9"}
        assert await tx.config.all() == {
            "flags": [1, "two", None],
            "mes": {"base": "http://127.0.0.1:9"},
            "scan.quiet_timeout": 3,
        }
        with pytest.raises(ValueError, match="cannot be empty"):
            await tx.config.set("", 1, now)
