"""The dashboard's fleet paging and filtering, and the live stream's resume rules."""

from __future__ import annotations

import asyncio
import json

from hwfleet.bus.base import Delivery
from hwfleet.web import live
from hwfleet.web.views import PAGE_SIZE, DeviceView, fleet_page


def device(index: int, state: str = "online", st_id: int = 0) -> dict[str, object]:
    return {
        "uuid": f"u-{index:04d}",
        "name": f"dev-{index:04d}",
        "serial": 1000 + index,
        "model_id": "m",
        "ipaddr": f"10.0.0.{index % 250}",
        "st_id": st_id,
        "state": state,
        "last_seen": "2026-01-01T00:00:00+00:00",
    }


def test_fleet_pages_filters_and_counts() -> None:
    bodies = [
        device(i, "offline" if i % 4 == 0 else "online", -1 if i == 1 else 0) for i in range(1000)
    ]
    first = fleet_page(bodies, "", "", 1)
    assert first.total == 1000 and first.pages == 1000 // PAGE_SIZE
    assert len(first.devices) == PAGE_SIZE and len(first.grid) == 1000
    assert first.counts == {"offline": 250, "maintenance": 1, "online": 749}
    last = fleet_page(bodies, "", "", 99)  # past the end: the last page
    assert last.page == last.pages and last.devices[-1].name == "dev-0999"
    assert fleet_page(bodies, "dev-0007", "", 1).total == 1
    assert fleet_page(bodies, "", "maintenance", 1).total == 1
    assert fleet_page(bodies, "", "offline", 1).total == 250


def test_status_ids_read_as_words() -> None:
    assert DeviceView.of(device(1, st_id=-2)).st_words == "scanning"
    assert DeviceView.of(device(1, st_id=999)).st_words == "status 999"
    assert DeviceView.of(device(1, st_id=-2)).colour == "scanning"
    assert DeviceView.of(device(1, "offline", -1)).colour == "offline"


def test_resume_prefers_last_event_id() -> None:
    assert live.resume_point("41", 7) == 41
    assert live.resume_point(None, 7) == 7
    assert live.resume_point("junk", None) is None
    assert live.resume_point(None, 0) == 0  # an empty log: replay from its start


def message(body: object, key: str = "") -> Delivery:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return Delivery(exchange="x", routing_key=key, body=raw)


async def test_gather_coalesces_per_name_and_skips_what_was_sent() -> None:
    queue: asyncio.Queue[tuple[bool, Delivery]] = asyncio.Queue()
    for event_id, key in ((5, "device.online.a"), (6, "device.offline.a"), (7, "scan.started.1")):
        queue.put_nowait((False, message({"id": event_id, "key": key})))
    queue.put_nowait((False, message(b"not json")))
    queue.put_nowait((False, message({"id": 3, "key": "task.finished.x"})))  # sent already
    batch = await live.gather(queue, 1.0, sent=4)
    assert batch.events == {"device": 6, "scan": 7} and batch.progress == {}
    assert len(await live.gather(queue, 0.01, sent=7)) == 0


async def test_progress_is_sent_with_its_data_newest_per_routing_key() -> None:
    queue: asyncio.Queue[tuple[bool, Delivery]] = asyncio.Queue()
    for percent in (10, 20, 30):  # one task reporting three times in a burst: sent once
        queue.put_nowait((True, message({"task_id": "t1", "percent": percent}, "task.t1")))
    queue.put_nowait((True, message({"graphId": "g", "label": "a"}, "graph.g")))
    queue.put_nowait((True, message({}, "outbox.delivery")))
    queue.put_nowait((True, message({}, "unknown.thing")))  # no page shows it: dropped
    queue.put_nowait((True, message(b"[1, 2]", "task.t2")))  # not an object: sent as {}
    batch = await live.gather(queue, 1.0, sent=0)
    assert batch.events == {}
    assert batch.progress == {
        "task.t1": ("taskprogress", '{"task_id":"t1","percent":30}'),
        "graph.g": ("graphprogress", '{"graphId":"g","label":"a"}'),
        "outbox.delivery": ("outbox", "{}"),
        "task.t2": ("taskprogress", "{}"),
    }
