"""Burn-in scans (seed 000): the scan row, one result per replying device, exactly-once finish.

Replicas share this table: a reply may be consumed by any controller, so
``add_result`` de-duplicates in the database (primary key on operationid +
device) and ``finish`` is a conditional UPDATE that only one caller can win.
"""

from __future__ import annotations

import builtins
import functools
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from hwfleet.store.base import AnyRow, Repository, check_limit, check_state, dialect_insert
from hwfleet.store.models import scan_results, scans
from hwfleet.store.records import RunningScan, ScanRecord, ScanResultRecord
from hwfleet.store.sqltypes import UTCDateTime, json_type
from hwfleet.types import Serial

_FINISHED = frozenset({"complete", "failed"})
#: pg_advisory_xact_lock key that serialises scan starts across replicas ("hwscan").
PG_SCAN_START_LOCK = int.from_bytes(b"hwscan", "big")


def to_scan(row: AnyRow) -> ScanRecord:
    m = row._mapping
    return ScanRecord(
        operationid=m["operationid"],
        state=m["state"],
        expected=m["expected"],
        quiet_timeout=float(m["quiet_timeout"]),
        started_at=m["started_at"],
        last_activity=m["last_activity"],
        finished_at=m["finished_at"],
        document=m["document"],
        error=m["error"],
    )


def to_result(row: AnyRow) -> ScanResultRecord:
    m = row._mapping
    return ScanResultRecord(
        operationid=m["operationid"],
        device_uuid=m["device_uuid"],
        sn=m["sn"],
        hwinfo=m["hwinfo"],
        entry=m["entry"],
        result=m["result"],
        error=m["error"],
        received_at=m["received_at"],
    )


@functools.cache
def _add_result_statement(pg: bool) -> sa.Executable:
    """INSERT … SELECT from the running scan, ON CONFLICT DO NOTHING: one statement per reply."""
    source = sa.select(
        scans.c.operationid,
        sa.bindparam("p_device_uuid", type_=sa.String()),
        sa.bindparam("p_sn", type_=json_type(nullable=True)),
        sa.bindparam("p_hwinfo", type_=json_type(nullable=True)),
        sa.bindparam("p_entry", type_=json_type(nullable=True)),
        sa.bindparam("p_result", type_=sa.String()),
        sa.bindparam("p_error", type_=sa.Text()),
        sa.bindparam("p_at", type_=UTCDateTime()),
    ).where(scans.c.operationid == sa.bindparam("p_operationid"), scans.c.state == "running")
    columns = ["operationid", "device_uuid", "sn", "hwinfo", "entry", "result", "error"]
    return (
        dialect_insert(pg, scan_results)
        .from_select([*columns, "received_at"], source)
        .on_conflict_do_nothing(index_elements=["operationid", "device_uuid"])
        .returning(scan_results.c.device_uuid)
    )


class ScanRepository(Repository):
    """``tx.scans``."""

    __slots__ = ()

    async def create(
        self, *, expected: list[dict[str, Any]], quiet_timeout: float, at: datetime
    ) -> ScanRecord:
        """A running scan; its ``operationid`` comes from the database (1, 2, 3, …)."""
        if quiet_timeout <= 0:
            raise ValueError(f"quiet_timeout must be positive, not {quiet_timeout}")
        stmt = (
            sa.insert(scans)
            .values(
                state="running",
                expected=list(expected),
                quiet_timeout=float(quiet_timeout),
                started_at=at,
                last_activity=at,
            )
            .returning(*scans.c)
        )
        row = await self._row(stmt)
        assert row is not None
        return to_scan(row)

    async def lock_starts(self) -> None:
        """Hold starts of other transactions until this one ends: on PostgreSQL an advisory
        lock (replicas start scans concurrently); SQLite writers are serialised already."""
        if self._pg:
            await self._conn.execute(
                sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": PG_SCAN_START_LOCK}
            )

    async def get(self, operationid: int) -> ScanRecord | None:
        row = await self._row(sa.select(scans).where(scans.c.operationid == operationid))
        return None if row is None else to_scan(row)

    async def list(self, limit: int = 50) -> builtins.list[ScanRecord]:
        """Newest first."""
        stmt = sa.select(scans).order_by(scans.c.operationid.desc()).limit(check_limit(limit))
        return [to_scan(row) for row in await self._rows(stmt)]

    async def add_result(
        self,
        operationid: int,
        *,
        device_uuid: str,
        sn: Serial | None,
        hwinfo: dict[str, Any] | None,
        entry: dict[str, Any] | None,
        result: str,
        error: str | None,
        at: datetime,
    ) -> bool:
        """Record one device's reply; True only the first time for this scan and device.

        False as well when the scan is unknown or no longer running: a late or
        stray reply is dropped without aborting the caller's transaction.
        """
        if result not in ("0", "1"):
            raise ValueError(f'a scan result is "0" or "1", not {result!r}')
        params = {
            "p_operationid": operationid,
            "p_device_uuid": device_uuid,
            "p_sn": sn,
            "p_hwinfo": hwinfo,
            "p_entry": entry,
            "p_result": result,
            "p_error": error,
            "p_at": at,
        }
        return await self._row(_add_result_statement(self._pg), params) is not None

    async def results(
        self, operationid: int, *, hwinfo: bool = True
    ) -> builtins.list[ScanResultRecord]:
        """In arrival order; ``hwinfo=False`` leaves each device's hwinfo out (None).

        Finishing a scan needs only the entries: decoding 10,000 hwinfo documents
        there would hold the finished event back by a large share of a second.
        """
        columns = [
            c if hwinfo or c.name != "hwinfo" else sa.null().label("hwinfo") for c in scan_results.c
        ]
        stmt = (
            sa.select(*columns)
            .where(scan_results.c.operationid == operationid)
            .order_by(scan_results.c.received_at, scan_results.c.device_uuid)
        )
        return [to_result(row) for row in await self._rows(stmt)]

    async def answered_counts(self, operationids: builtins.list[int]) -> dict[int, int]:
        """How many devices have a result, per scan (scans without any are left out)."""
        stmt = (
            sa.select(scan_results.c.operationid, sa.func.count())
            .where(scan_results.c.operationid.in_(operationids))
            .group_by(scan_results.c.operationid)
        )
        return {int(op): int(count) for op, count in await self._rows(stmt)}

    async def answered(self, operationid: int) -> builtins.list[str]:
        """The uuids of the devices with a result: what a watcher needs, without the payloads
        (decoding 10,000 hwinfo documents per sweep would cost more than the scan itself)."""
        stmt = sa.select(scan_results.c.device_uuid).where(
            scan_results.c.operationid == operationid
        )
        return [row[0] for row in await self._rows(stmt)]

    async def running_activity(self) -> builtins.list[RunningScan]:
        """Open scans' ids, last activity and quiet timeout: a cheap poll for watchers."""
        stmt = (
            sa.select(scans.c.operationid, scans.c.last_activity, scans.c.quiet_timeout)
            .where(scans.c.state == "running")
            .order_by(scans.c.operationid)
        )
        return [
            RunningScan(operationid=op, last_activity=at, quiet_timeout=quiet)
            for op, at, quiet in await self._rows(stmt)
        ]

    async def touch(self, operationid: int, at: datetime) -> None:
        """Record activity (a reply arrived): the quiet timeout counts from here."""
        await self._conn.execute(
            sa.update(scans)
            .where(scans.c.operationid == operationid, scans.c.state == "running")
            .values(last_activity=at)
        )

    async def finish(
        self,
        operationid: int,
        *,
        state: str,
        document: dict[str, Any],
        error: str | None,
        at: datetime,
    ) -> bool:
        """Move a running scan to ``complete``/``failed``; True only for the caller that did it.

        On PostgreSQL a second concurrent UPDATE waits for the first's row lock,
        re-checks ``state = 'running'`` after it commits, and matches nothing.
        """
        check_state(state, _FINISHED, "finished scan")
        stmt = (
            sa.update(scans)
            .where(scans.c.operationid == operationid, scans.c.state == "running")
            .values(state=state, document=document, error=error, finished_at=at, last_activity=at)
            .returning(scans.c.operationid)
        )
        return await self._row(stmt) is not None

    async def running(self) -> builtins.list[ScanRecord]:
        """Scans still open (a restarted controller resumes their timers), oldest first."""
        stmt = sa.select(scans).where(scans.c.state == "running").order_by(scans.c.operationid)
        return [to_scan(row) for row in await self._rows(stmt)]
