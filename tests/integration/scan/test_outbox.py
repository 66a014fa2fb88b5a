"""The outbox worker against a real mes-sim: outages, restarts, refusals, prompt wake-up."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace

import pytest

from hwfleet.controller.outbox import OutboxWorker
from hwfleet.integrations.mes import MesClient
from hwfleet.sim.mes import MesSimulator, bind_socket, serve
from hwfleet.store import Store, open_store


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    db = await open_store(f"sqlite+aiosqlite:///{tmp_path / 'outbox.db'}")
    yield db
    await db.close()


def free_port() -> int:
    sock = bind_socket("127.0.0.1", 0)
    port: int = sock.getsockname()[1]
    sock.close()
    return port


async def add_rows(store: Store, base: str, count: int, prefix: str = "k") -> list[str]:
    keys = [f"{prefix}-{i}" for i in range(count)]
    async with store.tx() as tx:
        for i, key in enumerate(keys):
            await tx.outbox.add(
                kind="notification",
                url=f"{base}/notifications/devicescan",
                body={"id": str(i), "status": f"{i} devices passed scanning"},
                idempotency_key=key,
                at=datetime.now(UTC),
            )
    return keys


async def states(store: Store) -> dict[str, str]:
    async with store.tx(readonly=True) as tx:
        return {r.idempotency_key: r.state for r in await tx.outbox.list(limit=1000)}


async def until(store: Store, predicate: object, timeout: float = 15.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate(await states(store)):  # type: ignore[operator]  # noqa: ASYNC110
            await asyncio.sleep(0.02)


async def test_mes_down_at_first_then_everything_delivered_once(
    store: Store, kit: SimpleNamespace
) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    keys = await add_rows(store, base, 25)
    async with MesClient(kit.mes_urls(base)) as mes:
        worker = OutboxWorker(store, mes, poll_interval=0.1, backoff=0.05, backoff_cap=0.3)
        await worker.start()
        try:
            # Nothing listens yet: wait until every row has failed at least once.
            async def all_failed() -> bool:
                async with store.tx(readonly=True) as tx:
                    rows = await tx.outbox.list()
                return all(r.attempts >= 1 and r.last_error for r in rows)

            await kit.eventually(all_failed)
            async with store.tx(readonly=True) as tx:
                error = (await tx.outbox.list())[0].last_error
            # One readable line, not the exception's repr (issue 11 §6).
            assert error == f"POST {base}/notifications/devicescan: connection refused"
            sim = MesSimulator.from_profile({"devices": []})
            async with serve(sim, "127.0.0.1", port):
                await until(store, lambda s: set(s.values()) == {"delivered"})
        finally:
            await worker.close()
    assert sorted(sim.counts) == sorted(keys)
    assert set(sim.counts.values()) == {1}
    assert not any(p["duplicate"] for p in sim.posts)


async def test_restart_mid_delivery_loses_nothing_and_applies_nothing_twice(
    tmp_path: Path, kit: SimpleNamespace
) -> None:
    db = f"sqlite+aiosqlite:///{tmp_path / 'outbox.db'}"
    sim = MesSimulator.from_profile({"devices": []})
    async with serve(sim) as base:
        await kit.eventually(lambda: _faults(base, latency=0.2))
        first_store = await open_store(db)
        keys = await add_rows(first_store, base, 20)
        async with MesClient(kit.mes_urls(base)) as mes:
            first = OutboxWorker(first_store, mes, batch=4, lease=1.0, poll_interval=0.05)
            await first.start()
            await kit.eventually(lambda: _posted(sim, 5))
            await first.close()  # killed mid-delivery: a batch is in flight, unmarked
            await first_store.close()

            second_store = await open_store(db)
            second = OutboxWorker(second_store, mes, batch=4, lease=1.0, poll_interval=0.05)
            await second.start()
            try:
                await until(second_store, lambda s: set(s.values()) == {"delivered"})
            finally:
                await second.close()
                await second_store.close()
    accepted = [p["key"] for p in sim.posts if not p["duplicate"]]
    assert sorted(accepted) == sorted(keys)  # every key applied exactly once
    redone = [p["key"] for p in sim.posts if p["duplicate"]]
    assert len(redone) <= 4  # at most the one batch that was cut short was sent again


async def _faults(base: str, **spec: float) -> bool:
    import httpx

    async with httpx.AsyncClient() as http:
        return (await http.post(f"{base}/_faults", json=spec)).status_code == 200


async def _passes(worker: OutboxWorker) -> bool:
    return worker.passes >= 1


async def _posted(sim: MesSimulator, n: int) -> bool:
    return len(sim.posts) >= n


async def test_refused_posts_go_dead_after_the_limit_with_the_error(
    store: Store, kit: SimpleNamespace
) -> None:
    sim = MesSimulator.from_profile({"devices": []})
    async with serve(sim) as base, MesClient(kit.mes_urls(base)) as mes:
        async with store.tx() as tx:
            await tx.outbox.add(
                kind="pair",
                url=f"{base}/no/such/endpoint",
                body={"x": 1},
                idempotency_key="bad",
                at=datetime.now(UTC),
            )
        worker = OutboxWorker(store, mes, poll_interval=0.05, backoff=0.01, max_attempts_refused=3)
        await worker.start()
        try:
            await until(store, lambda s: s.get("bad") == "dead")
        finally:
            await worker.close()
    async with store.tx(readonly=True) as tx:
        row = (await tx.outbox.list())[0]
    assert row.attempts == 3
    assert "404" in (row.last_error or "")


async def test_wake_delivers_without_waiting_for_the_poll(
    store: Store, kit: SimpleNamespace
) -> None:
    sim = MesSimulator.from_profile({"devices": []})
    async with serve(sim) as base, MesClient(kit.mes_urls(base)) as mes:
        worker = OutboxWorker(store, mes, poll_interval=60.0)
        await worker.start()
        try:
            await kit.eventually(lambda: _passes(worker))  # idle: the next look is a minute away
            await add_rows(store, base, 1, prefix="wake")
            worker.wake()
            await until(store, lambda s: s.get("wake-0") == "delivered", timeout=3.0)
        finally:
            await worker.close()
    assert sim.counts == {"wake-0": 1}


def test_retry_delay_is_capped_and_jittered(store: Store) -> None:
    worker = OutboxWorker(store, poster=None, backoff=0.5, backoff_cap=10.0)  # type: ignore[arg-type]
    assert 0.25 <= worker.retry_delay(0) <= 0.5
    assert 2.0 <= worker.retry_delay(3) <= 4.0
    assert all(5.0 <= worker.retry_delay(n) <= 10.0 for n in (10, 100, 1000))
