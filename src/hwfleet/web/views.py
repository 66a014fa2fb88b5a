"""What the templates show: typed rows made from the API services' JSON bodies.

The services answer the REST API's JSON shapes; the dashboard turns each into a small
frozen dataclass here, so templates read named, typed fields and a changed body fails in
one place. :func:`fleet_page` filters, counts and pages the fleet for the Fleet page.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, TypeVar, cast

from hwfleet.protocol.status import StatusId, describe

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

Body = Mapping[str, object]
PAGE_SIZE = 100


def text(body: Body, key: str) -> str:
    value = body.get(key)
    if isinstance(value, dict | list):
        return json.dumps(value, sort_keys=True)
    return "" if value is None else str(value)


def number(body: Body, key: str) -> int:
    value = body.get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def maybe_float(body: Body, key: str) -> float | None:
    value = body.get(key)
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def maybe_int(body: Body, key: str) -> int | None:
    value = body.get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


#: How a field is read from a JSON body, by its annotation (this module's four kinds).
READERS: dict[str, Callable[[Body, str], object]] = {
    "str": text,
    "int": number,
    "int | None": maybe_int,
    "float | None": maybe_float,
}
V = TypeVar("V")


def from_body(cls: type[V], body: Body, **source: str) -> V:
    """A view dataclass from a service's JSON body: each field read by its type, from the
    key of the same name (or the one ``source`` names for it)."""
    values = {
        f.name: READERS[str(f.type)](body, source.get(f.name, f.name))
        for f in fields(cast("type[DataclassInstance]", cls))
    }
    return cls(**values)


@dataclass(frozen=True, slots=True)
class DeviceView:
    uuid: str
    name: str
    serial: str
    model: str
    version: str
    ipaddr: str
    st_id: int
    state: str
    last_seen: str
    transport: str
    kind: str

    @property
    def st_words(self) -> str:
        return describe(self.st_id)

    @property
    def colour(self) -> str:
        """The state class the grid and the table colour a device by."""
        if self.state != "online":
            return self.state or "offline"
        if self.st_id == StatusId.MAINTENANCE:
            return "maintenance"
        if self.st_id == StatusId.SCANNING:
            return "scanning"
        return "busy" if self.st_id else "online"

    def matches(self, query: str) -> bool:
        haystack = " ".join((self.uuid, self.name, self.serial, self.model, self.ipaddr))
        return query.lower() in haystack.lower()

    @classmethod
    def of(cls, body: Body) -> DeviceView:
        return from_body(cls, body, model="model_id")


@dataclass(frozen=True, slots=True)
class FleetPage:
    devices: list[DeviceView]  # this page's rows
    grid: list[DeviceView]  # every device the filter keeps (the rack picture)
    counts: dict[str, int]  # colour -> devices, over the whole fleet
    total: int
    page: int
    pages: int
    query: str
    state: str


def fleet_page(bodies: list[dict[str, object]], query: str, state: str, page: int) -> FleetPage:
    fleet = [DeviceView.of(b) for b in bodies]
    fleet.sort(key=lambda d: (d.name, d.uuid))
    counts = dict(Counter(d.colour for d in fleet))
    kept = [
        d
        for d in fleet
        if (not query or d.matches(query)) and (not state or state in (d.state, d.colour))
    ]
    pages = max(1, -(-len(kept) // PAGE_SIZE))
    page = min(max(page, 1), pages)
    rows = kept[(page - 1) * PAGE_SIZE : page * PAGE_SIZE]
    return FleetPage(rows, kept, counts, len(kept), page, pages, query, state)


@dataclass(frozen=True, slots=True)
class TaskView:
    id: str
    device_uuid: str
    method: str
    state: str
    percent: float | None
    msg: str
    created_at: str
    finished_at: str

    @property
    def active(self) -> bool:
        return self.state in ("pending", "running")


@dataclass(frozen=True, slots=True)
class KeyView:
    id: str
    device_uuid: str
    fingerprint: str
    state: str
    source: str
    reason: str
    created_at: str


@dataclass(frozen=True, slots=True)
class EventView:
    id: int
    at: str
    key: str
    device_uuid: str
    payload: str

    @classmethod
    def of(cls, body: Body) -> EventView:
        return from_body(cls, body, key="routing_key")


@dataclass(frozen=True, slots=True)
class ScanView:
    operationid: int
    state: str
    expected: int
    answered: int
    passed: int | None
    started_at: str
    finished_at: str
    error: str


@dataclass(frozen=True, slots=True)
class ScanResultView:
    uuid: str
    sn: str
    result: str
    error: str
    received_at: str


@dataclass(frozen=True, slots=True)
class DeliveryView:
    kind: str
    url: str
    state: str
    attempts: int
    last_error: str
    delivered_at: str


def progress_points(started_at: str, results: list[ScanResultView], expected: int) -> str:
    """An SVG polyline (200 x 60 box) of devices answered over the scan's time."""
    from datetime import datetime

    try:
        start = datetime.fromisoformat(started_at)
        times = sorted(
            (datetime.fromisoformat(r.received_at) - start).total_seconds() for r in results
        )
    except ValueError:
        return ""
    if not times:
        return "0,60"
    span = max(times[-1], 0.001)
    top = max(expected, len(times), 1)
    points = ["0,60"]
    for count, at in enumerate(times, start=1):
        points.append(f"{200 * at / span:.1f},{60 - 60 * count / top:.1f}")
    return " ".join(points)
