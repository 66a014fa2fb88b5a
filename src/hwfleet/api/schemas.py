"""Request and response bodies of the REST API (pydantic, so OpenAPI describes them)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class Device(BaseModel):
    """DESIGN §8: the fields ``hwfleet devices --json`` prints."""

    uuid: str
    name: str
    serial: int | str
    model_id: str
    version: str
    ipaddr: str
    st_id: int
    state: str
    last_seen: str | None
    transport: str = ""
    first_seen: str | None = None
    enrolled: bool = True
    #: "agent", or "legacy": a seed-000 reference device that answered a scan (docs/scan.md).
    kind: str = "agent"
    #: The SKU the graph engine assigned (``sku.assigned``); None before any matched.
    sku: str | None = None


#: The most uuids one ping request may name (``all`` has no such bound).
MAX_PING_TARGETS = 10_000


class PingRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    uuids: list[str] = Field(
        default_factory=list,
        max_length=MAX_PING_TARGETS,
        description="device uuids (duplicates are pinged once)",
    )
    all: bool = False
    timeout: float = Field(default=5.0, gt=0, le=120)


class PingResult(BaseModel):
    ok: bool
    rtt_ms: float | None
    error: str | None = None


class RunRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    method: str = Field(min_length=1)
    params: dict[str, Any] = Field(default_factory=dict)
    timeout: float = Field(default=30.0, gt=0, le=3600)


class Task(BaseModel):
    id: str
    device_uuid: str
    method: str
    params: dict[str, Any]
    state: str
    percent: float | None
    eta: float | None
    msg: str | None
    result: dict[str, Any] | None
    created_at: str
    updated_at: str
    finished_at: str | None


class Event(BaseModel):
    id: int
    at: str
    routing_key: str
    device_uuid: str | None
    payload: dict[str, Any]
