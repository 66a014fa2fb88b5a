"""Burn-in scans (seed 000): the scan row, one result per replying device, exactly-once finish.

Replicas share this table: a reply may be consumed by any controller, so
``add_results`` de-duplicates in the database (primary key on operationid +
device) and ``finish`` is a conditional UPDATE that only one caller can win.
"""

from __future__ import annotations

import builtins
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from hwfleet.store.base import AnyRow, Repository, check_limit, check_state
from hwfleet.store.models import scan_results, scans
from hwfleet.store.records import RunningScan, ScanRecord, ScanResultRecord
from hwfleet.types import JsonObject, Serial

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


@dataclass(frozen=True, slots=True)
class ScanResultRow:
    """One device's reply to a scan, as the scan's result writer stores it."""

    operationid: int
    device_uuid: str
    sn: Serial | None
    hwinfo: JsonObject | None
    entry: JsonObject | None
    result: str
    error: str | None
    #: A device that never enrolled (kind ``legacy``): its device row is recorded too.
    legacy: bool = False


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

    async def add_results(
        self, rows: Sequence[ScanResultRow], *, at: datetime
    ) -> builtins.list[ScanResultRow]:
        """Store the rows of running scans not stored before; returns those that were new.

        Two statements per batch, whatever its size: on a 10,000-device rack one
        statement per reply (about 1.4 ms on SQLite) on the writer's serial path made
        the database the bottleneck of the whole scan. A late or stray reply (scan
        unknown or no longer running) is dropped without aborting the transaction.
        """
        if not rows:
            return []
        ops = sorted({row.operationid for row in rows})
        query = (
            sa.select(scans.c.operationid)
            .where(scans.c.operationid.in_(ops), scans.c.state == "running")
            .order_by(scans.c.operationid)
        )
        if self._pg:
            # Hold finish() off until these results are committed (its UPDATE needs the row).
            # Exclusive, not shared: the writer's touch() updates the same row later in this
            # transaction, and two replicas upgrading shared locks would deadlock.
            query = query.with_for_update()
        running = {r[0] for r in await self._rows(query)}
        wanted = [row for row in rows if row.operationid in running]
        added: set[tuple[int, str]] = set()
        if wanted:
            # One cached statement executed with many parameter sets (SQLAlchemy batches them
            # as "insertmanyvalues"): a multi-row VALUES clause would be compiled again per batch.
            stmt = (
                self._insert(scan_results)
                .on_conflict_do_nothing(index_elements=["operationid", "device_uuid"])
                .returning(scan_results.c.operationid, scan_results.c.device_uuid)
            )
            params = [
                {
                    "operationid": row.operationid,
                    "device_uuid": row.device_uuid,
                    "sn": row.sn,
                    "hwinfo": row.hwinfo,
                    "entry": row.entry,
                    "result": row.result,
                    "error": row.error,
                    "received_at": at,
                }
                for row in wanted
            ]
            added.update((r[0], r[1]) for r in await self._rows(stmt, params))
        # One reply per device: a batch holding the same device twice stores it once.
        seen: set[tuple[int, str]] = set()
        new: builtins.list[ScanResultRow] = []
        for row in wanted:
            key = (row.operationid, row.device_uuid)
            if key in added and key not in seen:
                seen.add(key)
                new.append(row)
        return new

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
