"""tx.outbox: idempotent queueing, leased claims, retry/dead/delivered bookkeeping."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from hwfleet.store import OutboxRecord, Store


async def _add(
    store: Store, key: str, at: datetime, body: dict[str, object] | None = None
) -> OutboxRecord:
    async with store.tx() as tx:
        return await tx.outbox.add(
            kind="mes.deviceScan",
            url="http://127.0.0.1:9/log/deviceScan",
            body=body if body is not None else {"operationid": 1},
            idempotency_key=key,
            at=at,
        )


async def test_add_with_a_known_key_returns_the_first_row(store: Store, now: datetime) -> None:
    first = await _add(store, "scan-1", now, {"operationid": 1})
    again = await _add(store, "scan-1", now + timedelta(seconds=5), {"operationid": 999})
    assert again == first
    assert (first.state, first.attempts, first.next_attempt_at) == ("pending", 0, now)
    async with store.tx() as tx:
        assert [r.id for r in await tx.outbox.list()] == [first.id]
        assert await tx.outbox.pending_count() == 1


async def test_claim_leases_due_rows_and_skips_them_until_the_lease_expires(
    store: Store, now: datetime
) -> None:
    rows = [await _add(store, f"k{i}", now + timedelta(seconds=i)) for i in range(4)]
    future = await _add(store, "future", now + timedelta(hours=1))
    t = now + timedelta(seconds=10)
    async with store.tx() as tx:
        claimed = await tx.outbox.claim(worker="w1", limit=3, lease=30, now=t)
    assert [r.id for r in claimed] == [r.id for r in rows[:3]]  # oldest due first
    assert all(r.attempts == 1 for r in claimed)
    async with store.tx() as tx:
        second = await tx.outbox.claim(worker="w2", limit=10, lease=30, now=t)
    assert [r.id for r in second] == [rows[3].id]  # leased rows and future rows are skipped
    assert future.id not in {r.id for r in second}

    expired = t + timedelta(seconds=31)
    async with store.tx() as tx:
        again = await tx.outbox.claim(worker="w3", limit=10, lease=30, now=expired)
    # Every lease ran out (their worker died): all four are due again, the future one is not.
    assert sorted(r.id for r in again) == sorted(r.id for r in rows)
    assert {r.id: r.attempts for r in again}[rows[0].id] == 2


async def test_delivered_retry_dead(store: Store, now: datetime) -> None:
    a, b, c = [await _add(store, key, now) for key in ("a", "b", "c")]
    async with store.tx() as tx:
        await tx.outbox.claim(worker="w", limit=10, lease=60, now=now)
        await tx.outbox.delivered(a.id, now + timedelta(seconds=1))
        await tx.outbox.retry(b.id, error="HTTP 503", next_attempt_at=now + timedelta(seconds=30))
        await tx.outbox.dead(c.id, error="HTTP 400: bad document", at=now + timedelta(seconds=1))
    async with store.tx() as tx:
        assert await tx.outbox.pending_count() == 1
        got = {r.id: r for r in await tx.outbox.list()}
        assert [r.id for r in await tx.outbox.list(state="dead")] == [c.id]
        # The retried row is not due before its time, even though its lease was released.
        assert (
            await tx.outbox.claim(worker="w", limit=10, lease=60, now=now + timedelta(seconds=29))
            == []
        )
        retried = await tx.outbox.claim(
            worker="w", limit=10, lease=60, now=now + timedelta(seconds=30)
        )
    assert (got[a.id].state, got[a.id].delivered_at) == ("delivered", now + timedelta(seconds=1))
    assert (got[b.id].state, got[b.id].last_error) == ("pending", "HTTP 503")
    assert (got[c.id].state, got[c.id].last_error) == ("dead", "HTTP 400: bad document")
    assert [(r.id, r.attempts) for r in retried] == [(b.id, 2)]


async def test_finished_rows_are_not_revived(store: Store, now: datetime) -> None:
    row = await _add(store, "once", now)
    async with store.tx() as tx:
        await tx.outbox.delivered(row.id, now)
        await tx.outbox.retry(row.id, error="late failure report", next_attempt_at=now)
        await tx.outbox.dead(row.id, error="late", at=now)
        got = await tx.outbox.get(row.id)
        assert await tx.outbox.claim(worker="w", limit=5, lease=5, now=now) == []
    assert got is not None and (got.state, got.last_error) == ("delivered", None)


async def test_bad_arguments_are_refused(store: Store, now: datetime) -> None:
    async with store.tx() as tx:
        with pytest.raises(ValueError, match="idempotency key"):
            await tx.outbox.add(kind="k", url="u", body={}, idempotency_key="", at=now)
        with pytest.raises(ValueError, match="limit must be a positive integer"):
            await tx.outbox.claim(worker="w", limit=0, lease=5, now=now)
        with pytest.raises(ValueError, match="lease must be a positive"):
            await tx.outbox.claim(worker="w", limit=1, lease=0, now=now)
        with pytest.raises(ValueError, match="outbox state must be one of"):
            await tx.outbox.list(state="sent")
