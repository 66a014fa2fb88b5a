"""Out-of-band management: a node's BMC, power, SEL, sensors, pollers and their data.

Credentials go in (``PUT .../bmc``) and never come out: every answer is built from
:meth:`BmcAddress.public`. A BMC failure is a 502 whose detail starts with its kind
(``auth:``, ``unreachable:``, ``timeout:``, ``protocol:``); it is also kept on the node.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Query, Request, status
from pydantic import BaseModel, ConfigDict, Field

from hwfleet.api.auth import require_token
from hwfleet.api.convert import to_json
from hwfleet.api.deps import lookup
from hwfleet.oob.driver import BmcAddress, BmcError
from hwfleet.oob.service import NoBmcError, OobService

router = APIRouter(prefix="/api/v1", tags=["oob"], dependencies=[Depends(require_token)])


def oob_service(request: Request) -> OobService:
    return lookup(request, OobService, "out-of-band management is not running")


OobDep = Annotated[OobService, Depends(oob_service)]

_STATUS = {
    "bad_input": status.HTTP_422_UNPROCESSABLE_CONTENT,
    "unsupported": status.HTTP_501_NOT_IMPLEMENTED,
    "timeout": status.HTTP_504_GATEWAY_TIMEOUT,
}


def http_error(exc: Exception) -> HTTPException:
    if isinstance(exc, NoBmcError):
        return HTTPException(status.HTTP_404_NOT_FOUND, str(exc))
    if isinstance(exc, BmcError):
        return HTTPException(_STATUS.get(exc.kind, status.HTTP_502_BAD_GATEWAY), str(exc))
    raise exc


class BmcRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    driver: Literal["redfish", "ipmi", "snmp"] | str = Field(min_length=1, max_length=32)
    address: str = Field(min_length=1, max_length=2048)
    username: str = Field(default="", max_length=256)
    password: str = Field(default="", max_length=1024)
    port: int = Field(default=0, ge=0, le=65535)
    verify_tls: bool = True
    system: str = Field(default="", max_length=256)
    # SNMPv3: ``username`` is the USM user, ``password`` the authentication passphrase.
    priv_password: str = Field(default="", max_length=1024)
    auth_protocol: str = Field(default="", max_length=16)
    priv_protocol: str = Field(default="", max_length=16)


class PowerRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    action: Literal["on", "off", "cycle", "reset", "status"]


class FirmwareRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    spec: dict[str, Any]
    dry_run: bool = False


class PollerPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")
    interval: float | None = Field(default=None, ge=1, le=86400)
    paused: bool | None = None
    rules: list[dict[str, Any]] | None = Field(default=None, max_length=100)


@router.put("/nodes/{uuid}/bmc")
async def set_bmc(uuid: str, body: BmcRequest, oob: OobDep) -> dict[str, Any]:
    """Set (or replace) the node's BMC; the answer never holds the credentials."""
    try:
        return await oob.set_bmc(uuid, BmcAddress(**body.model_dump()))
    except (BmcError, NoBmcError) as exc:
        raise http_error(exc) from None


@router.get("/nodes/{uuid}/bmc")
async def get_bmc(uuid: str, oob: OobDep) -> dict[str, Any]:
    try:
        return await oob.describe(uuid)
    except (BmcError, NoBmcError) as exc:
        raise http_error(exc) from None


@router.delete("/nodes/{uuid}/bmc")
async def delete_bmc(uuid: str, oob: OobDep) -> dict[str, Any]:
    if not await oob.delete_bmc(uuid):
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"node {uuid} has no BMC")
    return {"node": uuid, "deleted": True}


@router.get("/bmcs")
async def list_bmcs(oob: OobDep) -> list[dict[str, Any]]:
    return await oob.list_bmcs()


@router.post("/nodes/{uuid}/power")
async def power(uuid: str, body: PowerRequest, oob: OobDep) -> dict[str, Any]:
    try:
        return {"node": uuid, "power": await oob.power(uuid, body.action)}
    except (BmcError, NoBmcError) as exc:
        raise http_error(exc) from None


@router.get("/nodes/{uuid}/sel")
async def sel(uuid: str, oob: OobDep) -> dict[str, Any]:
    try:
        return {"node": uuid, "sel": await oob.sel(uuid)}
    except (BmcError, NoBmcError) as exc:
        raise http_error(exc) from None


@router.get("/nodes/{uuid}/sensors")
async def sensors(uuid: str, oob: OobDep) -> dict[str, Any]:
    try:
        return {"node": uuid, "sensors": await oob.sensors(uuid)}
    except (BmcError, NoBmcError) as exc:
        raise http_error(exc) from None


@router.get("/pollers")
async def list_pollers(oob: OobDep, node: str | None = Query(None)) -> list[dict[str, Any]]:
    return await oob.pollers.list(node)


@router.get("/pollers/{poller_id}")
async def get_poller(poller_id: int, oob: OobDep) -> dict[str, Any]:
    found = await oob.pollers.get(poller_id)
    if found is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no poller {poller_id}")
    return found


@router.patch("/pollers/{poller_id}")
async def patch_poller(poller_id: int, body: PollerPatch, oob: OobDep) -> dict[str, Any]:
    changes = body.model_dump(exclude_none=True)
    if not changes:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, "nothing to change")
    found = await oob.pollers.update(poller_id, changes)
    if found is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no poller {poller_id}")
    return found


@router.get("/pollers/{poller_id}/data")
async def poller_data(poller_id: int, oob: OobDep) -> dict[str, Any]:
    """The latest data the poller read (``data`` null until its first success)."""
    found = await oob.pollers.data(poller_id)
    if found is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no poller {poller_id}")
    return found


@router.post("/nodes/{uuid}/firmware")
async def firmware_secure(uuid: str, body: FirmwareRequest, oob: OobDep) -> dict[str, Any]:
    """``decom.firmware_secure`` through the node's BMC. A dry run answers the plan; otherwise
    ``{"task": row}``: the update runs as a task (``GET /tasks/{id}?wait=`` follows it; its
    ``result`` is the report of what changed and what already matched, read back)."""
    try:
        if body.dry_run:
            return await oob.firmware_plan(uuid, body.spec)
        if oob.firmware_jobs is None:
            raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, "firmware tasks not running")
        return {"task": to_json(await oob.firmware_jobs.start(uuid, body.spec))}
    except (BmcError, NoBmcError) as exc:
        raise http_error(exc) from None
