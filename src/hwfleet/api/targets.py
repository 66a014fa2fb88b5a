"""Targets and groups: resolve a target expression; keep named groups (``G@name``)."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from fastapi import APIRouter, Depends, Query, Request, Response, status

from hwfleet.api.auth import require_token
from hwfleet.api.deps import devices_service
from hwfleet.api.services.targets import TargetsService

router = APIRouter(prefix="/api/v1", tags=["targets"], dependencies=[Depends(require_token)])


def targets_service(request: Request) -> TargetsService:
    """Built on the devices service: the fleet snapshot and its liveness rule are its."""
    return TargetsService(devices_service(request))


TargetsDep = Annotated[TargetsService, Depends(targets_service)]


class GroupBody(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """A stored expression (``expr``) or static members (targets resolved now to uuids)."""

    expr: str | None = None
    members: list[str] = msgspec.field(default_factory=list)


@router.get("/targets")
async def resolve(
    targets: TargetsDep,
    expr: str = Query(..., max_length=4096, description="a target expression (docs/cli.md)"),
) -> dict[str, Any]:
    """The devices ``expr`` selects, in the fleet's order; 422 names the fault and its place."""
    devices = await targets.resolve(expr)
    return {"expr": expr, "count": len(devices), "devices": devices}


@router.get("/groups")
async def list_groups(targets: TargetsDep) -> list[dict[str, Any]]:
    return await targets.groups()


@router.get("/groups/{name}")
async def show_group(name: str, targets: TargetsDep) -> dict[str, Any]:
    return await targets.group(name)


@router.put("/groups/{name}")
async def put_group(name: str, request: Request, targets: TargetsDep) -> dict[str, Any]:
    """Create or replace a group: ``{"expr": "name=rack1-*"}`` or ``{"members": [...]}``."""
    from hwfleet.api.services.targets import unprocessable

    try:
        body = msgspec.json.decode(await request.body(), type=GroupBody)
    except msgspec.DecodeError as exc:
        raise unprocessable(exc) from None
    return await targets.put_group(name, body.expr, body.members)


@router.delete("/groups/{name}", status_code=status.HTTP_204_NO_CONTENT)
async def remove_group(name: str, targets: TargetsDep) -> Response:
    await targets.remove_group(name)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
