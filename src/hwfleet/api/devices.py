"""Devices: list, show, ping, and run a command on one."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Request, status

from hwfleet.api.auth import require_token
from hwfleet.api.convert import to_json
from hwfleet.api.schemas import Device, PingRequest, PingResult, RunRequest
from hwfleet.controller.tasks import is_long
from hwfleet.protocol.errors import CallTimeout, RemoteError, SessionClosed
from hwfleet.store.devices import as_of

router = APIRouter(prefix="/api/v1", tags=["devices"], dependencies=[Depends(require_token)])

DEVICE_FIELDS = (
    "uuid",
    "name",
    "serial",
    "model_id",
    "version",
    "ipaddr",
    "st_id",
    "state",
    "last_seen",
    "transport",
    "first_seen",
)


def _device(record: Any) -> dict[str, Any]:
    body = to_json(record)
    return {k: body.get(k) for k in DEVICE_FIELDS}


@router.get("/devices", response_model=list[Device])
async def list_devices(request: Request, discovered: bool = True) -> list[dict[str, Any]]:
    """Enrolled devices; then (unless ``discovered=false``) devices that answered discovery
    but never enrolled, with ``state`` ``"discovered"`` and ``enrolled`` false."""
    ctl = request.app.state.ctl
    async with ctl.store.tx() as tx:
        records = await tx.devices.list(stale_before=ctl.devices.stale_before())
        devices = [_device(r) | {"enrolled": True} for r in records]
        if discovered:
            known = {d["uuid"] for d in devices}
            devices += [_discovered(r) for r in await tx.discovered.list() if r.uuid not in known]
    return devices


def _discovered(record: Any) -> dict[str, Any]:
    meta = record.metadata
    return {
        "uuid": record.uuid,
        "name": str(meta.get("name", "")),
        "serial": meta.get("serial", ""),
        "model_id": str(meta.get("model_id", "")),
        "version": str(meta.get("version", "")),
        "ipaddr": record.ipaddr,
        "st_id": int(meta.get("st_id", 0)),
        "state": "discovered",
        "last_seen": record.last_seen.isoformat(),
        "transport": "",
        "first_seen": record.first_seen.isoformat(),
        "enrolled": False,
    }


@router.get("/devices/{uuid}")
async def get_device(uuid: str, request: Request) -> dict[str, Any]:
    ctl = request.app.state.ctl
    async with ctl.store.tx() as tx:
        record = await tx.devices.get(uuid)
        if record is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"no device {uuid}")
        record = as_of(record, ctl.devices.stale_before())
        inventory = await tx.devices.get_inventory(uuid)
    return {**_device(record), "macs": record.macs, "inventory": inventory}


@router.post("/devices/ping", response_model=dict[str, PingResult])
async def ping(body: PingRequest, request: Request) -> dict[str, dict[str, Any]]:
    devices = request.app.state.ctl.devices
    if body.all == bool(body.uuids):
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT, "give either 'all': true or a list of 'uuids'"
        )
    targets = await devices.online_now() if body.all else body.uuids
    result: dict[str, dict[str, Any]] = await devices.ping_many(targets, body.timeout)
    return result


@router.post("/devices/{uuid}/run")
async def run(uuid: str, body: RunRequest, request: Request) -> dict[str, Any]:
    """Short methods answer with their result; long ones answer with the task row."""
    ctl = request.app.state.ctl
    if not await ctl.devices.reachable(uuid):
        raise HTTPException(status.HTTP_409_CONFLICT, f"device {uuid} is not connected")
    try:
        if is_long(body.method):
            return {"task": to_json(await ctl.tasks.start(uuid, body.method, body.params))}
        return {"result": await ctl.devices.call(uuid, body.method, body.params, body.timeout)}
    except RemoteError as exc:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT, f"{exc.method}: {exc.msg} ({exc.code})"
        ) from None
    except (CallTimeout, SessionClosed) as exc:
        raise HTTPException(status.HTTP_504_GATEWAY_TIMEOUT, str(exc)) from None
    except ValueError as exc:  # e.g. a task_id that cannot name its task.finished event
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)) from None
