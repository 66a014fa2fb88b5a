"""tx.tasks: the seed-001 lifecycle, and nothing after a terminal state."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from hwfleet.store import Store


async def _create(store: Store, task_id: str, device: str, at: datetime) -> None:
    async with store.tx() as tx:
        await tx.tasks.create(task_id, device, "decom.disk_erase", {"disks": ["sda"]}, at)


async def test_create_then_progress_then_complete(store: Store, now: datetime) -> None:
    async with store.tx() as tx:
        created = await tx.tasks.create("t-1", "u-1", "decom.disk_erase", {"disks": ["sda"]}, now)
    assert created.state == "pending"
    assert created.params == {"disks": ["sda"]}
    assert created.percent is None and created.finished_at is None
    assert created.created_at == created.updated_at == now

    t1 = now + timedelta(seconds=1)
    async with store.tx() as tx:
        running = await tx.tasks.update("t-1", state="running", percent=40, eta=12.5, at=t1)
    assert running is not None
    assert (running.state, running.percent, running.eta) == ("running", 40.0, 12.5)
    assert isinstance(running.percent, float)
    assert running.updated_at == t1 and running.finished_at is None

    t2 = now + timedelta(seconds=2)
    async with store.tx() as tx:
        done = await tx.tasks.update("t-1", state="complete", percent=100, result={"ok": 1}, at=t2)
    assert done is not None
    assert (done.state, done.percent, done.result) == ("complete", 100.0, {"ok": 1})
    assert done.eta == 12.5  # a field not reported keeps its value
    assert done.finished_at == t2


@pytest.mark.parametrize("terminal", ["complete", "error", "lost"])
async def test_updates_after_a_terminal_state_are_ignored(
    store: Store, now: datetime, terminal: str
) -> None:
    await _create(store, "t-1", "u-1", now)
    async with store.tx() as tx:
        final = await tx.tasks.update("t-1", state=terminal, msg="final", at=now)
    late = now + timedelta(seconds=9)
    async with store.tx() as tx:
        after_running = await tx.tasks.update("t-1", state="running", percent=50, at=late)
        after_complete = await tx.tasks.update("t-1", state="complete", msg="late", at=late)
        stored = await tx.tasks.get("t-1")
    assert final is not None and final.state == terminal
    assert after_running == final
    assert after_complete == final
    assert stored == final


async def test_update_of_unknown_task_returns_none(store: Store, now: datetime) -> None:
    async with store.tx() as tx:
        assert await tx.tasks.update("nope", state="running", at=now) is None
        assert await tx.tasks.get("nope") is None


async def test_bad_state_and_percent_are_refused(store: Store, now: datetime) -> None:
    await _create(store, "t-1", "u-1", now)
    async with store.tx() as tx:
        with pytest.raises(ValueError, match="task state must be one of"):
            await tx.tasks.update("t-1", state="finished", at=now)
        with pytest.raises(ValueError, match="percent must be between 0 and 100"):
            await tx.tasks.update("t-1", state="running", percent=101, at=now)


async def test_list_filters_and_orders_newest_first(store: Store, now: datetime) -> None:
    for i in range(5):
        await _create(store, f"t-{i}", "u-1" if i % 2 == 0 else "u-2", now + timedelta(seconds=i))
    async with store.tx() as tx:
        await tx.tasks.update("t-0", state="complete", at=now + timedelta(seconds=10))
        await tx.tasks.update("t-2", state="running", percent=1, at=now + timedelta(seconds=10))
    async with store.tx() as tx:
        everything = [t.id for t in await tx.tasks.list()]
        for_u1 = [t.id for t in await tx.tasks.list(device_uuid="u-1")]
        active_u1 = [t.id for t in await tx.tasks.list(device_uuid="u-1", active_only=True)]
        active = [t.id for t in await tx.tasks.list(active_only=True)]
        newest_two = [t.id for t in await tx.tasks.list(limit=2)]
    assert everything == ["t-4", "t-3", "t-2", "t-1", "t-0"]
    assert for_u1 == ["t-4", "t-2", "t-0"]
    assert active_u1 == ["t-4", "t-2"]
    assert active == ["t-4", "t-3", "t-2", "t-1"]
    assert newest_two == ["t-4", "t-3"]


async def test_fail_active_for_device_ends_only_that_devices_open_tasks(
    store: Store, now: datetime
) -> None:
    await _create(store, "a-pending", "u-1", now)
    await _create(store, "a-running", "u-1", now + timedelta(seconds=1))
    await _create(store, "a-done", "u-1", now + timedelta(seconds=2))
    await _create(store, "b-running", "u-2", now)
    gone = now + timedelta(minutes=1)
    async with store.tx() as tx:
        await tx.tasks.update("a-running", state="running", percent=10, at=now)
        await tx.tasks.update("a-done", state="complete", at=now)
        await tx.tasks.update("b-running", state="running", at=now)
        failed = await tx.tasks.fail_active_for_device("u-1", "device went offline", gone)
    assert [t.id for t in failed] == ["a-pending", "a-running"]
    assert all(t.state == "error" and t.msg == "device went offline" for t in failed)
    assert all(t.finished_at == gone for t in failed)
    async with store.tx() as tx:
        other = await tx.tasks.get("b-running")
        done = await tx.tasks.get("a-done")
        lost = await tx.tasks.fail_active_for_device(
            "u-2", "controller restarted", gone, state="lost"
        )
    assert other is not None and other.state == "running"
    assert done is not None and done.state == "complete" and done.msg is None
    assert [(t.id, t.state) for t in lost] == [("b-running", "lost")]


async def test_an_error_inside_tx_rolls_everything_back(store: Store, now: datetime) -> None:
    with pytest.raises(RuntimeError, match="boom"):
        async with store.tx() as tx:
            await tx.tasks.create("t-rolled-back", "u-1", "decom.qc", {}, now)
            raise RuntimeError("boom")
    async with store.tx() as tx:
        assert await tx.tasks.get("t-rolled-back") is None
