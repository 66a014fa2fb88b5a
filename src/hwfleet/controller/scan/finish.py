"""Finishing a scan: the document from the stored results, and its posts, in one transaction.

Whichever replica's ``tx.scans.finish`` wins writes the deviceScan, Pair and
notification rows to the outbox in the same transaction, so the posts exist
exactly once (or the scan is still running and nothing was written). Their
idempotency keys are ``scan-<operationid>-<kind>-<start stamp>``: stable for
one scan across replicas and restarts, and distinct from the same
operationid of another database (a re-installed controller starts again at 1
and must not look like a repeat to the MES).

Pair is posted only when at least one device passed: an empty ``snArray``
pairs nothing, and the seed sends to Pair only for a passing result. The
deviceScan document and the notification are always posted.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from hwfleet.bus.topology import EventKey
from hwfleet.controller.scan.compare import ScanOutcome, build_document, failed_entry
from hwfleet.controller.scan.identity import serial_key
from hwfleet.types import JsonObject

if TYPE_CHECKING:
    from hwfleet.store import EventRecord, ScanRecord, ScanResultRecord, Tx

#: Prefix of a result error that is our fault (the MES lookup), not the device's.
INTERNAL = "internal error: "

#: Outbox kind → the ``mes_urls()`` key it is posted to.
POSTS = {"deviceScan": "scan", "pair": "pair", "notification": "notify"}


@dataclass(frozen=True, slots=True)
class Finished:
    """What the winning replica did: the outcome and the event row to announce."""

    operationid: int
    state: str
    outcome: ScanOutcome
    event: EventRecord
    posts: int


def idempotency_key(scan: ScanRecord, kind: str) -> str:
    stamp = format(int(scan.started_at.timestamp() * 1_000_000), "x")
    return f"scan-{scan.operationid}-{kind}-{stamp}"


def assemble(
    scan: ScanRecord, results: list[ScanResultRecord], *, unrecorded: str | None = None
) -> ScanOutcome:
    """Replies in arrival order, then a failed entry for each expected device without a result.

    ``unrecorded``: why replies could not be stored (a database outage); the devices
    without a result carry it as an internal error instead of "no reply to the scan".
    """
    entries: list[JsonObject] = []
    internal: list[str] = []
    answered: set[str] = set()
    for result in results:
        answered.add(result.device_uuid)
        if result.entry is not None:
            entries.append(result.entry)
        if result.error and result.error.startswith(INTERNAL):
            internal.append(result.error[len(INTERNAL) :])
    wait = f"{scan.quiet_timeout:g}"
    reason = f"no reply to the scan (quiet timeout {wait} s)"
    if unrecorded is not None:
        reason = f"{INTERNAL}{unrecorded}"
        internal.append(unrecorded)
    for device in scan.expected:
        if device.get("uuid") not in answered:
            entries.append(failed_entry(device.get("sn", ""), reason))
    return build_document(scan.operationid, one_per_serial(entries), internal_errors=internal)


def one_per_serial(entries: list[JsonObject]) -> list[JsonObject]:
    """One entry per unit: a serial held by several devices is one failed entry.

    The identity rules admit one result per device and refuse replies that
    claim another device's serial, so this only happens when two enrolled
    devices hold one serial: neither can be trusted to be that unit, so it is
    not paired.
    """
    groups: dict[str, list[JsonObject]] = {}
    for entry in entries:
        groups.setdefault(serial_key(entry["sn"]), []).append(entry)
    if len(groups) == len(entries):
        return entries
    merged: list[JsonObject] = []
    for entry in entries:
        group = groups.get(serial_key(entry["sn"]))
        if group is None:
            continue  # its group was merged at its first entry
        if len(group) == 1:
            merged.append(entry)
            continue
        del groups[serial_key(entry["sn"])]
        reason = f"serial {entry['sn']!r} was reported by {len(group)} devices; not paired"
        merged.append(failed_entry(entry["sn"], reason))
    return merged


async def finish_scan(
    tx: Tx,
    operationid: int,
    *,
    urls: Mapping[str, str],
    reason: str,
    at: datetime,
    unrecorded: str | None = None,
) -> Finished | None:
    """Finish ``operationid`` if it is still running; None when another caller already did."""
    scan = await tx.scans.get(operationid)
    if scan is None or scan.state != "running":
        return None
    results = await tx.scans.results(operationid, hwinfo=False)
    outcome = assemble(scan, results, unrecorded=unrecorded)
    state = "failed" if outcome.internal_errors else "complete"
    error = outcome.notification()["status"] if outcome.internal_errors else None
    if not await tx.scans.finish(
        operationid, state=state, document=outcome.document, error=error, at=at
    ):
        return None
    bodies = {
        "deviceScan": outcome.document,
        "pair": outcome.pair_body() if outcome.passed else None,
        "notification": outcome.notification(),
    }
    posts = 0
    for kind, body in bodies.items():
        url = urls.get(POSTS[kind], "")
        if body is None or not url:
            continue
        key = idempotency_key(scan, kind)
        await tx.outbox.add(kind=kind, url=url, body=body, idempotency_key=key, at=at)
        posts += 1
    payload = {
        "operationid": operationid,
        "state": state,
        "reason": reason,
        "devices": len(outcome.document["scaninfo"]),
        "passed": len(outcome.passed),
        "error": error,
    }
    event = await tx.events.add(EventKey.scan_finished(operationid), payload, at=at)
    return Finished(operationid, state, outcome, event, posts)
