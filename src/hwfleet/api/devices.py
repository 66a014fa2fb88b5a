"""Devices: list, show, ping, and run a command on one."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Request, status

from hwfleet.api.auth import require_token
from hwfleet.api.convert import to_json
from hwfleet.api.schemas import Device, PingRequest, PingResult, RunRequest
from hwfleet.controller.tasks import is_long
from hwfleet.protocol import envelope
from hwfleet.protocol.errors import CallTimeout, RemoteError, SessionClosed
from hwfleet.protocol.framing import MAX_LINE
from hwfleet.store.devices import LEGACY, as_of

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
    "kind",
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
        devices = [_device(r) | {"enrolled": r.kind != LEGACY} for r in records]
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
        "kind": "agent",
    }


@router.get("/devices/{uuid}")
async def get_device(uuid: str, request: Request) -> dict[str, Any]:
    ctl = request.app.state.ctl
    async with ctl.store.tx() as tx:
        record = await tx.devices.get(uuid)
        if record is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"{NO_SUCH_DEVICE}: {uuid}")
        record = as_of(record, ctl.devices.stale_before())
        inventory = await tx.devices.get_inventory(uuid)
    return {**_device(record), "macs": record.macs, "inventory": inventory}


NO_SUCH_DEVICE = "no such device"


async def require_connected(request: Request, uuid: str) -> None:
    """404 for a uuid the controller has never known, 409 for a known device that is offline."""
    ctl = request.app.state.ctl
    if await ctl.devices.reachable(uuid):  # connected here, or an AMQP device via the bus
        return
    async with ctl.store.tx(readonly=True) as tx:
        known = await tx.devices.get(uuid) is not None
    if not known:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"{NO_SUCH_DEVICE}: {uuid}")
    raise HTTPException(status.HTTP_409_CONFLICT, f"device {uuid} is not connected")


def check_envelope(method: str, params: dict[str, Any]) -> None:
    """413 for a command whose line would pass the protocol's limit (the agent would end
    the session over it): measured on the envelope exactly as it would be sent."""
    if is_long(method):  # the task service adds a task_id of new_id()'s length
        params = {**params, "task_id": params.get("task_id") or envelope.new_id()}
    size = len(envelope.encode(envelope.command(method, params))) - 1  # newline excluded
    if size > MAX_LINE:
        raise HTTPException(
            status.HTTP_413_CONTENT_TOO_LARGE,
            f"params: the {method} command would be a {size}-byte line, over the protocol's "
            f"{MAX_LINE}-byte limit: send less",
        )


@router.post("/devices/ping", response_model=dict[str, PingResult])
async def ping(body: PingRequest, request: Request) -> dict[str, dict[str, Any]]:
    """Ping devices (each uuid once); an unknown uuid answers ``error: "no such device"``."""
    ctl = request.app.state.ctl
    devices = ctl.devices
    if body.all == bool(body.uuids):
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT, "give either 'all': true or a list of 'uuids'"
        )
    targets = await devices.online_now() if body.all else list(dict.fromkeys(body.uuids))
    unreachable = [u for u in targets if devices.get(u) is None]
    unknown: set[str] = set()
    if unreachable:
        async with ctl.store.tx(readonly=True) as tx:
            unknown = set(unreachable) - await tx.devices.existing(unreachable)
    known = [u for u in targets if u not in unknown]
    result: dict[str, dict[str, Any]] = await devices.ping_many(known, body.timeout)
    missing = {"ok": False, "rtt_ms": None, "error": NO_SUCH_DEVICE}
    return {u: result.get(u, missing) for u in targets}


@router.post("/devices/{uuid}/run")
async def run(uuid: str, body: RunRequest, request: Request) -> dict[str, Any]:
    """Short methods answer with their result; long ones answer with the task row.

    404 for an unknown uuid, 409 for a device that is not connected, 413 for params
    whose command line would pass the protocol's 1 MiB limit.
    """
    ctl = request.app.state.ctl
    check_envelope(body.method, body.params)
    await require_connected(request, uuid)
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
