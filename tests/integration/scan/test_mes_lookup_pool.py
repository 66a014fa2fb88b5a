"""MES lookups in worker processes: same answers as in-process, survives a killed worker."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest

from hwfleet.integrations.mes import MesClient, MesError
from hwfleet.integrations.mes_lookup import MesLookupPool


def devices(kit: SimpleNamespace) -> list[Any]:
    return [
        kit.SimDevice("u-1", 1001, [("eth0", "00:00:00:00:10:01"), ("eth1", "00:00:00:00:10:02")]),
        kit.SimDevice("u-2", "B-2", [("eth0", "aa:bb:cc:00:00:02")]),
    ]


async def test_pool_answers_exactly_like_the_client(mes_sim: Any, kit: SimpleNamespace) -> None:
    async with mes_sim(kit.profile_for(devices(kit))) as (_, base):
        urls = kit.mes_urls(base)
        async with MesClient(urls) as client, MesLookupPool(urls, workers=2) as pool:
            for sn in (1001, "B-2", 4242):  # two registered, one not
                assert await pool.get_device(sn) == await client.get_device(sn)
            await set_faults(base, garbage="html")
            with pytest.raises(MesError) as in_pool:
                await pool.get_device(1001)
            with pytest.raises(MesError) as in_process:
                await client.get_device(1001)
            assert str(in_pool.value) == str(in_process.value)
            assert "HTML" in str(in_pool.value)
            assert len(pool.pids()) == 2


async def test_a_killed_worker_is_replaced_and_its_lookups_answered(
    mes_sim: Any, kit: SimpleNamespace
) -> None:
    async with (
        mes_sim(kit.profile_for(devices(kit))) as (_, base),
        MesLookupPool(kit.mes_urls(base), workers=1) as pool,
    ):
        await pool.get_device(1001)  # started
        [first] = pool.pids()
        await set_faults(base, latency=30.0)  # hold the next lookups inside the worker
        lookups = [asyncio.create_task(pool.get_device(1001)) for _ in range(5)]

        async def arrived() -> bool:
            return int((await kit.received(base))["lookups_received"]) >= 6

        await kit.eventually(arrived)
        os.kill(first, signal.SIGKILL)
        await set_faults(base, latency=0.0)
        async with asyncio.timeout(20):
            records = await asyncio.gather(*lookups)
        assert all(r.registered for r in records)
        assert pool.pids() and pool.pids() != [first]


async def test_workers_exit_with_the_pool_and_never_see_urls_on_their_command_line(
    tmp_path: Path,
) -> None:
    secret = "s3cret-password"
    urls = {"get": f"http://mes:{secret}@127.0.0.1:9/deviceInfo/getById"}
    pool = MesLookupPool(urls, workers=2, retry_for=0.0)
    with pytest.raises(MesError, match="unreachable"):
        await pool.get_device(1)
    pids = pool.pids()
    assert len(pids) == 2
    for pid in pids:
        assert secret.encode() not in _proc(pid, "cmdline")
    await pool.aclose()
    for pid in pids:
        assert _gone(pid)
    with pytest.raises(MesError, match="closed"):
        await pool.get_device(1)


def _proc(pid: int, name: str) -> bytes:
    return Path(f"/proc/{pid}/{name}").read_bytes()


def _gone(pid: int) -> bool:
    """Exited and reaped (or at least exited: a zombie waits for no one here)."""
    try:
        return _proc(pid, "stat").split()[2] == b"Z"
    except FileNotFoundError:
        return True


async def set_faults(base: str, **faults: Any) -> None:
    async with httpx.AsyncClient() as http:
        (await http.post(f"{base}/_faults", json=faults)).raise_for_status()
