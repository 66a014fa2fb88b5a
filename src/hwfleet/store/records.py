"""Records the store hands to callers: frozen msgspec structs, never ORM objects.

Callers may keep a record after its transaction ends, pass it across tasks, or
encode it straight to JSON (``msgspec.json.encode(record)``) for the API.
Every time is a timezone-aware UTC datetime.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec

from hwfleet.types import Serial

#: Task states; nothing changes a task once it reaches one of the terminal ones.
TASK_STATES = frozenset({"pending", "running", "error", "complete", "lost"})
TASK_TERMINAL = frozenset({"error", "complete", "lost"})
TASK_ACTIVE = frozenset({"pending", "running"})
SCAN_STATES = frozenset({"running", "complete", "failed"})
OUTBOX_STATES = frozenset({"pending", "delivered", "dead"})
KEY_STATES = frozenset({"pending", "accepted", "rejected", "denied"})


class DeviceRecord(msgspec.Struct, frozen=True, kw_only=True):
    """A device the controller has seen; ``serial`` keeps the JSON type the device reported."""

    uuid: str
    serial: Serial
    name: str
    model_id: str
    version: str
    ipaddr: str
    macs: list[str]
    st_id: int
    state: str  # "online" | "offline"
    transport: str
    first_seen: datetime
    last_seen: datetime
    kind: str = "agent"  # "agent" | "legacy" (a seed-000 reference device: serial only)


class TaskRecord(msgspec.Struct, frozen=True, kw_only=True):
    """A long command sent to a device and the progress it reported (seed 001 task_status)."""

    id: str
    device_uuid: str
    method: str
    params: dict[str, Any]
    state: str  # pending | running | error | complete | lost
    percent: float | None
    eta: float | None
    msg: str | None
    result: dict[str, Any] | None
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None


class EventRecord(msgspec.Struct, frozen=True, kw_only=True):
    """One state change, as published on the bus; ids only grow, so they serve as a cursor."""

    id: int
    at: datetime
    routing_key: str
    device_uuid: str | None
    payload: dict[str, Any]


class ScanRecord(msgspec.Struct, frozen=True, kw_only=True):
    """A burn-in scan (seed 000); ``operationid`` is allocated by the database from 1."""

    operationid: int
    state: str  # running | complete | failed
    expected: list[dict[str, Any]]
    quiet_timeout: float
    started_at: datetime
    last_activity: datetime
    finished_at: datetime | None
    document: dict[str, Any] | None
    error: str | None


class RunningScan(msgspec.Struct, frozen=True, kw_only=True):
    """What a scan watcher polls: an open scan's id, last activity and quiet timeout."""

    operationid: int
    last_activity: datetime
    quiet_timeout: float


class ScanResultRecord(msgspec.Struct, frozen=True, kw_only=True):
    """One device's reply to a scan, with the MES comparison entry built from it."""

    operationid: int
    device_uuid: str
    sn: Serial | None
    hwinfo: dict[str, Any] | None
    entry: dict[str, Any] | None
    result: str  # "0" | "1"
    error: str | None
    received_at: datetime


class OutboxRecord(msgspec.Struct, frozen=True, kw_only=True):
    """An external POST waiting for (or done with) delivery; ``attempts`` counts claims."""

    id: int
    kind: str
    url: str
    body: dict[str, Any]
    idempotency_key: str
    state: str  # pending | delivered | dead
    attempts: int
    next_attempt_at: datetime
    last_error: str | None
    created_at: datetime
    delivered_at: datetime | None


class KeyRecord(msgspec.Struct, frozen=True, kw_only=True):
    """An agent's public key and the operator's decision about it (DESIGN §6)."""

    id: str
    device_uuid: str
    fingerprint: str
    public_key_pem: str
    cert_pem: str | None
    state: str  # pending | accepted | rejected | denied
    source: str
    reason: str | None
    created_at: datetime
    decided_at: datetime | None


class DiscoveredRecord(msgspec.Struct, frozen=True, kw_only=True):
    """A device found by discovery (seed 004 metadata), whether or not it is enrolled."""

    uuid: str
    metadata: dict[str, Any]
    ipaddr: str
    spoofed: bool
    first_seen: datetime
    last_seen: datetime
