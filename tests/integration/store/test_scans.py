"""tx.scans: database-allocated operationids, de-duplicated replies, exactly-once finish."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import msgspec
import pytest

from hwfleet.store import ScanResultRow, Store

EXPECTED: list[dict[str, Any]] = [{"uuid": "u-1", "sn": 1001}, {"uuid": "u-2", "sn": "SN-2"}]


async def _result(
    store: Store, op: int, device: str, at: datetime, *, sn: Any = 1001, result: str = "1"
) -> bool:
    row = ScanResultRow(
        op, device, sn, {"pci": []}, {"sn": sn, "result": result, "macinfo": []}, result, None
    )
    async with store.tx() as tx:
        return await tx.scans.add_results([row], at=at) == [row]


async def test_operationids_are_integers_from_one(store: Store, now: datetime) -> None:
    async with store.tx() as tx:
        scans = [
            await tx.scans.create(expected=EXPECTED, quiet_timeout=10, at=now) for _ in range(3)
        ]
    assert [s.operationid for s in scans] == [1, 2, 3]
    assert all(type(s.operationid) is int for s in scans)
    first = scans[0]
    assert first.state == "running" and first.expected == EXPECTED
    assert first.quiet_timeout == 10.0 and isinstance(first.quiet_timeout, float)
    assert first.started_at == first.last_activity == now
    assert first.finished_at is None and first.document is None
    async with store.tx() as tx:
        assert [s.operationid for s in await tx.scans.list()] == [3, 2, 1]
        assert [s.operationid for s in await tx.scans.list(limit=1)] == [3]
        assert await tx.scans.get(2) == scans[1]
        assert await tx.scans.get(99) is None


async def test_a_second_result_for_the_same_device_is_refused(store: Store, now: datetime) -> None:
    async with store.tx() as tx:
        op = (await tx.scans.create(expected=EXPECTED, quiet_timeout=10, at=now)).operationid
    assert await _result(store, op, "u-1", now, sn=1001) is True
    assert await _result(store, op, "u-1", now + timedelta(seconds=1), result="0") is False
    assert await _result(store, op, "u-2", now + timedelta(seconds=2), sn="SN-2") is True
    async with store.tx() as tx:
        results = await tx.scans.results(op)
    assert [(r.device_uuid, r.result) for r in results] == [("u-1", "1"), ("u-2", "1")]
    sns = [r.sn for r in results]
    assert sns == [1001, "SN-2"] and type(sns[0]) is int  # sn keeps its JSON type
    assert results[0].entry == {"sn": 1001, "result": "1", "macinfo": []}
    assert results[0].received_at == now
    assert results[0].hwinfo == {"pci": []}
    async with store.tx() as tx:
        lean = await tx.scans.results(op, hwinfo=False)
    assert [r.hwinfo for r in lean] == [None, None]  # everything else as before
    assert [
        msgspec.structs.replace(r, hwinfo=h.hwinfo) for r, h in zip(lean, results, strict=True)
    ] == results


async def test_results_for_unknown_or_finished_scans_are_dropped(
    store: Store, now: datetime
) -> None:
    assert await _result(store, 42, "u-1", now) is False
    async with store.tx() as tx:
        op = (await tx.scans.create(expected=EXPECTED, quiet_timeout=10, at=now)).operationid
        assert await tx.scans.finish(op, state="complete", document={}, error=None, at=now)
    assert await _result(store, op, "u-1", now) is False
    async with store.tx() as tx:
        assert await tx.scans.results(op) == []


async def test_result_with_null_fields(store: Store, now: datetime) -> None:
    async with store.tx() as tx:
        op = (await tx.scans.create(expected=EXPECTED, quiet_timeout=10, at=now)).operationid
        row = ScanResultRow(op, "u-9", None, None, None, "0", "Device is not registered")
        assert await tx.scans.add_results([row], at=now) == [row]
        (got,) = await tx.scans.results(op)
    assert (got.sn, got.hwinfo, got.entry) == (None, None, None)
    assert got.error == "Device is not registered"


async def test_touch_finish_and_running(store: Store, now: datetime) -> None:
    async with store.tx() as tx:
        a = (await tx.scans.create(expected=[], quiet_timeout=2.5, at=now)).operationid
        b = (await tx.scans.create(expected=[], quiet_timeout=2.5, at=now)).operationid
    t1 = now + timedelta(seconds=1)
    async with store.tx() as tx:
        await tx.scans.touch(a, t1)
        assert [s.operationid for s in await tx.scans.running()] == [a, b]
    document = {"operationid": a, "pairInfo": [], "scaninfo": [{"sn": 1001, "result": "1"}]}
    t2 = now + timedelta(seconds=2)
    async with store.tx() as tx:
        assert await tx.scans.finish(a, state="complete", document=document, error=None, at=t2)
        assert not await tx.scans.finish(a, state="failed", document={}, error="again", at=t2)
        assert await tx.scans.finish(b, state="failed", document={}, error="MES down", at=t2)
        assert await tx.scans.running() == []
        done = await tx.scans.get(a)
        failed = await tx.scans.get(b)
    assert done is not None and failed is not None
    assert (done.state, done.document, done.error, done.finished_at) == (
        "complete",
        document,
        None,
        t2,
    )
    assert (failed.state, failed.error) == ("failed", "MES down")
    with pytest.raises(ValueError, match="finished scan state must be one of"):
        async with store.tx() as tx:
            await tx.scans.finish(a, state="running", document={}, error=None, at=t2)


async def test_touch_moves_last_activity(store: Store, now: datetime) -> None:
    async with store.tx() as tx:
        op = (await tx.scans.create(expected=[], quiet_timeout=10, at=now)).operationid
        await tx.scans.touch(op, now + timedelta(seconds=7))
        got = await tx.scans.get(op)
    assert got is not None and got.last_activity == now + timedelta(seconds=7)
