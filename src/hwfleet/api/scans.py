"""Scans (seed 000): start one, follow it, read its deviceScan document; the MES outbox.

``POST /api/v1/scans`` → ``{"operationid": n}``, or 409 naming the scan still
running (two scans at once would both post to the MES); ``GET /api/v1/scans/{n}``
→ the stored scan (``state`` running|complete|failed, counts, ``error``, the
``document`` once finished, per-device ``results`` unless ``results=false``, and
``mes``: the state of each of its posts to the MES); ``GET /api/v1/scans`` lists
recent scans, newest first, with their counts; ``GET /api/v1/outbox`` shows the
posts waiting for, delivered to or refused by the MES.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Query, status
from pydantic import BaseModel, Field

from hwfleet.api.auth import require_token
from hwfleet.api.deps import ScansDep
from hwfleet.errors import ScanRunningError

router = APIRouter(prefix="/api/v1", tags=["scans"], dependencies=[Depends(require_token)])


class ScanRequest(BaseModel):
    """Start a scan; by default every device online now is expected to answer."""

    quiet_timeout: float | None = Field(
        default=None, gt=0, le=3600, description="seconds without a reply before the scan ends"
    )
    devices: list[str] | None = Field(
        default=None, min_length=1, description="uuids of the devices expected to answer"
    )


class ScanStarted(BaseModel):
    operationid: int


@router.post("/scans", response_model=ScanStarted, status_code=status.HTTP_202_ACCEPTED)
async def start_scan(body: ScanRequest, scans: ScansDep) -> dict[str, int]:
    try:
        operationid = await scans.start(body.devices, body.quiet_timeout)
    except ScanRunningError as exc:
        raise HTTPException(
            status.HTTP_409_CONFLICT, str(exc), headers={"X-Running-Scan": str(exc.operationid)}
        ) from None
    return {"operationid": operationid}


@router.get("/scans")
async def list_scans(
    scans: ScansDep, limit: int = Query(50, ge=1, le=1000)
) -> list[dict[str, Any]]:
    """Recent scans, newest first, with how many devices answered and passed."""
    return await scans.list_scans(limit)


@router.get("/scans/{operationid}")
async def get_scan(
    operationid: int,
    scans: ScansDep,
    results: bool = Query(True, description="include every device's result"),
) -> dict[str, Any]:
    return await scans.get(operationid, results=results)


@router.get("/outbox")
async def list_outbox(
    scans: ScansDep,
    state: str | None = Query(None, pattern="^(pending|delivered|dead)$"),
    limit: int = Query(200, ge=1, le=1000),
) -> list[dict[str, Any]]:
    return await scans.outbox(state, limit)
