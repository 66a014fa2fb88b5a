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

from fastapi import APIRouter, Depends, HTTPException, Query, Request, status
from pydantic import BaseModel, Field

from hwfleet.api.auth import require_token
from hwfleet.api.convert import to_json
from hwfleet.controller.scan import POSTS, ScanRunning, idempotency_key

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


def _summary(scan: Any, answered: int | None) -> dict[str, Any]:
    body = to_json(scan)
    document = body.pop("document")
    expected = body.pop("expected")
    summary: dict[str, Any] = {
        **body,
        "expected": len(expected),
        "passed": None,
        "document": document,
    }
    if document is not None:
        summary["passed"] = sum(1 for e in document["scaninfo"] if e.get("result") == "1")
    if answered is not None:
        summary["answered"] = answered
    return summary


@router.post("/scans", response_model=ScanStarted, status_code=status.HTTP_202_ACCEPTED)
async def start_scan(body: ScanRequest, request: Request) -> dict[str, int]:
    ctl = request.app.state.ctl
    expected: list[dict[str, Any]] | None = None
    if body.devices is not None:
        expected = []
        async with ctl.store.tx(readonly=True) as tx:
            for uuid in dict.fromkeys(body.devices):
                device = await tx.devices.get(uuid)
                if device is None:
                    raise HTTPException(status.HTTP_404_NOT_FOUND, f"no device {uuid}")
                expected.append({"uuid": device.uuid, "sn": device.serial})
    try:
        scan = await ctl.scans.start(expected, quiet_timeout=body.quiet_timeout)
    except ScanRunning as exc:
        raise HTTPException(
            status.HTTP_409_CONFLICT, str(exc), headers={"X-Running-Scan": str(exc.operationid)}
        ) from None
    return {"operationid": scan.operationid}


@router.get("/scans")
async def list_scans(
    request: Request, limit: int = Query(50, ge=1, le=1000)
) -> list[dict[str, Any]]:
    """Recent scans, newest first, with how many devices answered and passed."""
    async with request.app.state.ctl.store.tx(readonly=True) as tx:
        scans = await tx.scans.list(limit=limit)
        answered = await tx.scans.answered_counts([s.operationid for s in scans])
    return [
        {**_summary(scan, answered.get(scan.operationid, 0)), "document": None} for scan in scans
    ]


def _delivery(row: Any) -> dict[str, Any]:
    body = to_json(row)
    fields = ("kind", "url", "state", "attempts", "last_error", "created_at", "delivered_at")
    return {k: body[k] for k in fields}


@router.get("/scans/{operationid}")
async def get_scan(
    operationid: int,
    request: Request,
    results: bool = Query(True, description="include every device's result"),
) -> dict[str, Any]:
    async with request.app.state.ctl.store.tx(readonly=True) as tx:
        scan = await tx.scans.get(operationid)
        if scan is None:
            raise HTTPException(
                status.HTTP_404_NOT_FOUND, f"no scan with operationid {operationid}"
            )
        # Polled while a scan runs (`hwfleet scan --wait`): count without decoding payloads.
        rows = await tx.scans.results(operationid) if results else []
        answered = len(rows) if results else len(await tx.scans.answered(operationid))
        posts = await tx.outbox.by_keys([idempotency_key(scan, kind) for kind in POSTS])
    body = _summary(scan, answered)
    body["mes"] = [_delivery(row) for row in posts]
    if results:
        body["results"] = [
            {
                "uuid": r.device_uuid,
                "sn": r.sn,
                "result": r.result,
                "error": r.error,
                "received_at": r.received_at.isoformat(),
            }
            for r in rows
        ]
    return body


@router.get("/outbox")
async def list_outbox(
    request: Request,
    state: str | None = Query(None, pattern="^(pending|delivered|dead)$"),
    limit: int = Query(200, ge=1, le=1000),
) -> list[dict[str, Any]]:
    async with request.app.state.ctl.store.tx(readonly=True) as tx:
        return [to_json(row) for row in await tx.outbox.list(state=state, limit=limit)]
