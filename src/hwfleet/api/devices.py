"""Devices: list, show, ping, and run a command on one."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from fastapi import APIRouter, Depends, HTTPException, Query, Response, status

from hwfleet.api.auth import require_token
from hwfleet.api.deps import DevicesDep
from hwfleet.api.schemas import Device, PingRequest, PingResult, RunRequest
from hwfleet.protocol.errors import CallTimeoutError, RemoteError, SessionClosedError

#: Largest page of ``GET /api/v1/devices?limit=``.
MAX_PAGE = 10_000

router = APIRouter(prefix="/api/v1", tags=["devices"], dependencies=[Depends(require_token)])


@router.get("/devices", response_model=list[Device])
async def list_devices(
    devices: DevicesDep,
    response: Response,
    discovered: bool = True,
    state: Annotated[str | None, Query(description="only devices in this state")] = None,
    model_id: Annotated[str | None, Query(description="only devices of this model")] = None,
    limit: Annotated[
        int | None, Query(ge=1, le=MAX_PAGE, description="at most this many, by uuid")
    ] = None,
    after: Annotated[
        str | None, Query(description="the page after this uuid (from X-Next-After)")
    ] = None,
) -> list[dict[str, Any]]:
    """Enrolled devices; then (unless ``discovered=false``) devices that answered discovery
    but never enrolled, with ``state`` ``"discovered"`` and ``enrolled`` false.

    With ``limit`` or ``after`` the devices come in pages ordered by uuid; a full page
    names the next page's cursor in the ``X-Next-After`` header.
    """
    rows = await devices.list_devices(discovered=discovered)
    if state is not None:
        rows = [r for r in rows if r.get("state") == state]
    if model_id is not None:
        rows = [r for r in rows if r.get("model_id") == model_id]
    if limit is None and after is None:
        return rows
    rows.sort(key=lambda r: str(r["uuid"]))
    if after is not None:
        rows = [r for r in rows if str(r["uuid"]) > after]
    if limit is not None and len(rows) > limit:
        rows = rows[:limit]
        response.headers["X-Next-After"] = str(rows[-1]["uuid"])
    return rows


@router.get("/devices/{uuid}")
async def get_device(uuid: str, devices: DevicesDep) -> dict[str, Any]:
    return await devices.get(uuid)


@router.post("/devices/ping", response_model=dict[str, PingResult])
async def ping(body: PingRequest, devices: DevicesDep) -> Response:
    """Ping devices (each uuid once); an unknown uuid answers ``error: "no such device"``.

    The reply is encoded here, not validated against ``PingResult`` entry by entry: the
    results are the controller's own, and for 10,000 devices the validation and encoding
    cost more than the pings (issue 18). ``response_model`` still documents the shape.
    """
    if body.all == bool(body.uuids):
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT, "give either 'all': true or a list of 'uuids'"
        )
    result = await devices.ping(body.uuids, every=body.all, timeout=body.timeout)
    return Response(msgspec.json.encode(result), media_type="application/json")


@router.post("/devices/{uuid}/run")
async def run(uuid: str, body: RunRequest, devices: DevicesDep) -> dict[str, Any]:
    """Short methods answer with their result; long ones answer with the task row.

    404 for an unknown uuid, 409 for a device that is not connected, 413 for params
    whose command line would pass the protocol's 1 MiB limit.
    """
    try:
        return await devices.run(uuid, body.method, body.params, body.timeout)
    except RemoteError as exc:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT, f"{exc.method}: {exc.msg} ({exc.code})"
        ) from None
    except (CallTimeoutError, SessionClosedError) as exc:
        raise HTTPException(status.HTTP_504_GATEWAY_TIMEOUT, str(exc)) from None
    except ValueError as exc:  # e.g. a task_id that cannot name its task.finished event
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)) from None
