"""A controller killed with SIGKILL mid-graph resumes on restart (issue 13 §2).

A real `hwfleet server` process runs graphs of Wait tasks; it is killed while a task
runs, and a second server on the same data dir finishes the work: tasks that succeeded
do not run again; the one that was running is retried when its definition allows
(``retries: 1``) and failed with the reason when it does not (``retries: 0``).
"""

from __future__ import annotations

import json
import signal
from pathlib import Path
from typing import Any

import httpx
import pytest

from hwfleet.store import open_store
from hwfleet.store.graphs import GraphRepository
from hwfleet.workflows.runner import LOST
from tests.conftest import wait_for
from tests.e2e.conftest import start_server

pytestmark = pytest.mark.slow

NODE = "5a5a5a5a-0000-4000-8000-00000000005a"


def graph(name: str, retries: int) -> dict[str, Any]:
    return {
        "friendlyName": name,
        "injectableName": name,
        "tasks": [
            {"label": "first", "taskName": "Task.Hwfleet.Wait", "retries": 0},
            {
                "label": "long",
                "taskName": "Task.Hwfleet.Wait",
                "retries": retries,
                "waitOn": {"first": "succeeded"},
            },
        ],
        "options": {"first": {"seconds": 0}, "long": {"seconds": 4}},
    }


async def test_sigkill_then_restart_resumes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HWFLEET_GRAPH_LEASE", "1.0")
    monkeypatch.setenv("HWFLEET_GRAPH_HEARTBEAT", "0.2")
    data = tmp_path / "ctl"
    server = start_server(data)
    store = await open_store(f"sqlite+aiosqlite:///{data / 'hwfleet.db'}")
    try:
        from hwfleet.controller.events import utcnow

        async with store.tx() as tx:
            await tx.devices.upsert(
                NODE, serial=5, name="n5", model_id="X", version="1", macs=[],
                ipaddr="127.1.5.5", st_id=0, transport="stream", online=False, at=utcnow(),
            )  # fmt: skip
        headers = {"Authorization": f"Bearer {(data / 'operator.token').read_text().strip()}"}
        async with httpx.AsyncClient(base_url=server.api, headers=headers) as http:
            for name, retries in (("Graph.Kill.Retry", 1), ("Graph.Kill.NoRetry", 0)):
                reply = await http.post("/api/v1/graph-library", json=graph(name, retries))
                assert reply.status_code == 201, reply.text
            retry = (
                await http.post(
                    "/api/v1/graphs", json={"name": "Graph.Kill.Retry", "nodes": [NODE]}
                )
            ).json()
        [retry_id] = [g["graphId"] for g in retry["graphs"]]

        async def running(graph_id: str) -> bool:
            async with store.tx(readonly=True) as tx:
                rows = await GraphRepository(tx.conn).tasks_of([graph_id])
            return [r.state for r in rows] == ["succeeded", "running"]

        await wait_for(lambda: running(retry_id), timeout=20, interval=0.05)
        server.process.send_signal(signal.SIGKILL)
        server.process.wait(10)

        # The node is free again only when the graph ends: the second graph waits its turn.
        second = start_server(data, log_name="server2.log")
        try:

            async def ended(graph_id: str) -> bool:
                async with store.tx(readonly=True) as tx:
                    g = await GraphRepository(tx.conn).get_graph(graph_id)
                return g is not None and g.status in ("succeeded", "failed", "cancelled")

            await wait_for(lambda: ended(retry_id), timeout=30, interval=0.1)
            async with store.tx(readonly=True) as tx:
                repo = GraphRepository(tx.conn)
                g = await repo.get_graph(retry_id)
                rows = await repo.tasks_of([retry_id])
            assert g is not None and g.status == "succeeded"
            assert [(r.label, r.state, r.attempts) for r in rows] == [
                ("first", "succeeded", 1),  # not run again
                ("long", "succeeded", 2),  # retried after the lease expired
            ]

            async with httpx.AsyncClient(base_url=second.api, headers=headers) as http:
                no_retry = (
                    await http.post(
                        "/api/v1/graphs", json={"name": "Graph.Kill.NoRetry", "nodes": [NODE]}
                    )
                ).json()
            [no_retry_id] = [g["graphId"] for g in no_retry["graphs"]]
            await wait_for(lambda: running(no_retry_id), timeout=20, interval=0.05)
            second.process.send_signal(signal.SIGKILL)
            second.process.wait(10)
            third = start_server(data, log_name="server3.log")
            try:
                await wait_for(lambda: ended(no_retry_id), timeout=30, interval=0.1)
                async with store.tx(readonly=True) as tx:
                    repo = GraphRepository(tx.conn)
                    g = await repo.get_graph(no_retry_id)
                    rows = await repo.tasks_of([no_retry_id])
                assert g is not None and g.status == "failed"
                assert rows[1].state == "failed" and rows[1].error == LOST
                done = third.cli("graphs", "status", no_retry_id, "--json")
                assert json.loads(done.stdout)["tasks"][1]["error"] == LOST
            finally:
                third.process.terminate()
                third.process.wait(15)
        finally:
            if second.process.poll() is None:
                second.process.kill()
    finally:
        if server.process.poll() is None:
            server.process.kill()
        await store.close()
