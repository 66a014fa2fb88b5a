"""Scans as the API sees them: start one, read the stored scans and the MES outbox."""

from __future__ import annotations

from typing import Any

from fastapi import HTTPException, status

from hwfleet.api.convert import to_json
from hwfleet.api.ports import ScanControl
from hwfleet.store import OutboxRecord, ScanRecord, Store
from hwfleet.types import JsonObject


def scan_summary(scan: ScanRecord, answered: int | None) -> dict[str, Any]:
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


def delivery_body(row: OutboxRecord) -> dict[str, Any]:
    body = to_json(row)
    fields = ("kind", "url", "state", "attempts", "last_error", "created_at", "delivered_at")
    return {k: body[k] for k in fields}


class ScansService:
    """The scan service's ``start``, and the store's scans, results and outbox."""

    def __init__(self, store: Store, scans: ScanControl) -> None:
        self.store = store
        self.scans = scans

    async def start(self, devices: list[str] | None, quiet_timeout: float | None) -> int:
        """The new scan's operationid; raises :class:`~hwfleet.errors.ScanRunningError`."""
        expected: list[JsonObject] | None = None
        if devices is not None:
            expected = []
            async with self.store.tx(readonly=True) as tx:
                for uuid in dict.fromkeys(devices):
                    device = await tx.devices.get(uuid)
                    if device is None:
                        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no device {uuid}")
                    expected.append({"uuid": device.uuid, "sn": device.serial})
        scan = await self.scans.start(expected, quiet_timeout=quiet_timeout)
        return scan.operationid

    async def list_scans(self, limit: int) -> list[dict[str, Any]]:
        """Recent scans, newest first, with how many devices answered and passed."""
        async with self.store.tx(readonly=True) as tx:
            scans = await tx.scans.list(limit=limit)
            answered = await tx.scans.answered_counts([s.operationid for s in scans])
        return [
            {**scan_summary(scan, answered.get(scan.operationid, 0)), "document": None}
            for scan in scans
        ]

    async def get(self, operationid: int, *, results: bool) -> dict[str, Any]:
        async with self.store.tx(readonly=True) as tx:
            scan = await tx.scans.get(operationid)
            if scan is None:
                raise HTTPException(
                    status.HTTP_404_NOT_FOUND, f"no scan with operationid {operationid}"
                )
            # Polled while a scan runs (`hwfleet scan --wait`): count without decoding payloads.
            rows = await tx.scans.results(operationid) if results else []
            answered = len(rows) if results else len(await tx.scans.answered(operationid))
            posts = await tx.outbox.by_keys(self.scans.mes_post_keys(scan))
        body = scan_summary(scan, answered)
        body["mes"] = [delivery_body(row) for row in posts]
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

    async def outbox(self, state: str | None, limit: int) -> list[dict[str, Any]]:
        async with self.store.tx(readonly=True) as tx:
            return [to_json(row) for row in await tx.outbox.list(state=state, limit=limit)]
