"""Seed 003 tried as an outsider would: RPCs over RabbitMQ, then SIGKILL and restart.

Nothing of hwfleet is imported: the controller is ``hwfleet server`` (PostgreSQL + RabbitMQ
on a temporary database and vhost), the fleet is ``hwfleet sim`` (stream carrier), and
this client speaks only AMQP (aio-pika) — plus ``GET /api/v1/devices`` once, to learn the
simulated devices' uuids, and ``GET /api/v1/graphs/{id}`` to tell an event that was lost
from a graph that never ended. It defines a task and a graph it ships (RackHD format:
inline and named tasks, ``options.defaults`` and a per-label override, ``waitOn``
succeeded/failed/finished, ``ignoreFailure``), refuses a bad one, runs the graph on every
device, cancels one, lists the active graphs, kills the controller with SIGKILL while wait
tasks run, restarts it and checks from the ``graph.finished``/``task.finished`` events:
every graph ends as its definition says, no task that succeeded before the kill ran again,
and how long the kill cost against the lease.

    .venv/bin/python bench/seed003_outsider.py [--devices 20] [--lease 5]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.request import Request, urlopen

import aio_pika
from _postgres import create_database, drop_database
from _rabbit import temporary_vhost

PASSWORD = secrets.token_urlsafe(12)
HWFLEET = [sys.executable, "-m", "hwfleet.cli"]


def inline(label: str, base: str, options: dict[str, Any], **extra: Any) -> dict[str, Any]:
    definition = {
        "friendlyName": label,
        "injectableName": f"Task.Outsider.{label}",
        "implementsTask": base,
        "options": options,
        "properties": {},
    }
    return {"label": label, "taskDefinition": definition, **extra}


TASK = {
    "friendlyName": "Outsider status",
    "injectableName": "Task.Outsider.Status",
    "implementsTask": "Task.Base.Agent.Run",
    "options": {"method": "status", "params": {}},
    "properties": {"os": {"linux": {}}},
}
GRAPH = {
    "friendlyName": "Outsider: ping, rest, a failing check, branches",
    "injectableName": "Graph.Outsider.Branches",
    "options": {"defaults": {"seconds": 1}, "rest": {"seconds": 4}},
    "tasks": [
        inline("ping", "Task.Base.Agent.Run", {"method": "ping", "params": {}}),
        inline("rest", "Task.Base.Wait", {"seconds": None}, waitOn={"ping": "succeeded"}),
        inline(
            "check",
            "Task.Base.Evaluate.Condition",
            {"when": "false"},
            waitOn={"rest": "finished"},
            ignoreFailure=True,
        ),
        {"label": "on-fail", "taskName": "Task.Outsider.Status", "waitOn": {"check": "failed"}},
        inline("on-pass", "Task.Base.Agent.Run", {"method": "ping"}, waitOn={"check": "succeeded"}),
    ],
}
#: What each task of a graph that was not cancelled ends as.
EXPECTED = {
    "ping": "succeeded",
    "rest": "succeeded",
    "check": "failed",
    "on-fail": "succeeded",
    "on-pass": "cancelled",
}
CYCLE = {
    "injectableName": "Graph.Outsider.Cycle",
    "tasks": [
        {"label": "a", "taskName": "Task.Outsider.Status", "waitOn": {"b": "succeeded"}},
        {"label": "b", "taskName": "Task.Outsider.Status", "waitOn": {"a": "succeeded"}},
    ],
}


class Client:
    """RPC by direct reply-to; events on an exclusive queue bound before anything runs."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.pending: dict[str, asyncio.Future[tuple[str, Any]]] = {}
        self.events: list[tuple[float, str, dict[str, Any]]] = []
        self.arrived = asyncio.Event()

    async def open(self) -> None:
        self.conn = await aio_pika.connect(self.url)
        self.channel = await self.conn.channel()
        replies = await self.channel.get_queue("amq.rabbitmq.reply-to", ensure=False)
        await replies.consume(self._reply, no_ack=True)
        events = await self.channel.declare_exchange(
            "hwfleet.events", aio_pika.ExchangeType.TOPIC, durable=True
        )
        queue = await self.channel.declare_queue(exclusive=True)
        for key in ("graph.#", "task.finished.#"):
            await queue.bind(events, key)
        await queue.consume(self._event, no_ack=True)

    async def _reply(self, message: aio_pika.abc.AbstractIncomingMessage) -> None:
        future = self.pending.pop(message.correlation_id or "", None)
        if future is not None and not future.done():
            future.set_result((message.type or "", json.loads(message.body)))

    async def _event(self, message: aio_pika.abc.AbstractIncomingMessage) -> None:
        self.events.append((time.monotonic(), message.routing_key or "", json.loads(message.body)))
        self.arrived.set()

    async def call(self, method: str, params: dict[str, Any], exchange: str = "task-graph-runner",
                   timeout: float = 10.0) -> tuple[str, Any]:  # fmt: skip
        corr = uuid.uuid4().hex
        future: asyncio.Future[tuple[str, Any]] = asyncio.get_running_loop().create_future()
        self.pending[corr] = future
        target = await self.channel.get_exchange(f"hwfleet.{exchange}", ensure=False)
        body = json.dumps(params).encode()
        message = aio_pika.Message(body, correlation_id=corr, reply_to="amq.rabbitmq.reply-to")
        await target.publish(message, routing_key=f"methods.{method}")
        async with asyncio.timeout(timeout):
            return await future

    async def serving(self) -> bool:
        """Whether the controller answers (checked on a channel of its own: publishing to an
        exchange that does not exist yet closes the channel it was sent on)."""
        probe = await self.conn.channel()
        try:
            await probe.get_exchange("hwfleet.task-graph-runner", ensure=True)
        finally:
            if not probe.is_closed:
                await probe.close()
        kind, _ = await self.call("getActiveTaskGraphs", {}, timeout=3)
        return kind == "result"

    async def rpc(self, method: str, params: dict[str, Any]) -> Any:
        kind, body = await self.call(method, params)
        if kind != "result":
            raise AssertionError(f"{method}: {body}")
        return body

    def finished(self, prefix: str) -> dict[str, dict[str, Any]]:
        return {key.split(".", 2)[2]: body["data"] for _, key, body in self.events
                if key.startswith(prefix)}  # fmt: skip

    async def until(self, check: Any, timeout: float) -> None:
        async with asyncio.timeout(timeout):
            while not check():
                self.arrived.clear()
                await self.arrived.wait()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_server(data: Path, db: str, bus: str, agent: int, api: int, lease: float) -> Any:
    args = [
        *HWFLEET, "server", "--data-dir", str(data), "--db", db, "--bus", bus,
        "--agent-listen", f"127.0.0.1:{agent}", "--api-listen", f"127.0.0.1:{api}",
        "--enroll-password", PASSWORD, "--graph-lease", f"{lease}s", "--graph-heartbeat", "1s",
        "--log-level", "warning",
    ]  # fmt: skip
    log = open(data.parent / "server.log", "ab")  # noqa: SIM115 - the child owns it
    return subprocess.Popen(args, stdout=log, stderr=log, stdin=subprocess.DEVNULL)


def start_sim(agent: int, devices: int, data: Path) -> Any:
    return subprocess.Popen(
        [*HWFLEET, "sim", "--controller", f"127.0.0.1:{agent}", "--devices", str(devices),
         "--enroll-password", PASSWORD, "--data-dir", str(data), "--no-discovery",
         "--log-level", "error"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL,
    )  # fmt: skip


def api_get(api: int, token: str, path: str) -> Any:
    request = Request(f"http://127.0.0.1:{api}{path}", headers={"Authorization": f"Bearer {token}"})
    with urlopen(request, timeout=10) as response:  # noqa: S310 - loopback, our own server
        return json.loads(response.read())


async def wait_for(what: str, check: Any, timeout: float) -> float:
    start = time.monotonic()
    while True:
        try:
            if await check():
                return time.monotonic() - start
        except Exception:  # noqa: S110 - not up yet; bounded by the timeout below
            pass
        if time.monotonic() - start > timeout:
            raise SystemExit(f"{what}: not within {timeout:g} s")
        await asyncio.sleep(0.2)  # polling another process; bounded above


async def scenario(devices: int, lease: float, db: str, bus: str, work: Path) -> None:
    data, agent, api = work / "ctl", free_port(), free_port()
    server = start_server(data, db, bus, agent, api, lease)
    sim = start_sim(agent, devices, work / "sim")
    client = Client(bus)
    try:
        await client.open()
        await wait_for("controller answers", client.serving, 120)
        token = (data / "operator.token").read_text().strip()

        async def online() -> bool:
            rows = await asyncio.to_thread(api_get, api, token, "/api/v1/devices")
            return sum(1 for d in rows if d.get("state") == "online") >= devices

        took = await wait_for(f"{devices} devices online", online, 600)
        rows = await asyncio.to_thread(api_get, api, token, "/api/v1/devices")
        nodes = sorted(d["uuid"] for d in rows if d.get("state") == "online")[:devices]
        print(f"fleet: {len(nodes)} simulated devices online after {took:.1f} s")

        # Definitions: a named task, a graph using it, a cycle refused naming the field.
        assert (await client.rpc("defineTask", {"definition": TASK}))["injectableName"]
        assert (await client.rpc("defineTaskGraph", {"definition": GRAPH}))["injectableName"]
        kind, body = await client.call("defineTaskGraph", {"definition": CYCLE})
        assert kind == "error" and body["error"]["code"] == "bad_params", body
        print(f"defineTaskGraph with a cycle: {body['error']['code']}: {body['error']['msg']}")
        library = await client.rpc("getTaskGraphLibrary", {})
        assert any(g["injectableName"] == GRAPH["injectableName"] for g in library["graphs"])

        # Runs: one per node, then refusals (busy node, unknown graph).
        run_at = time.monotonic()
        graphs = {}
        for node in nodes:
            reply = await client.rpc("runTaskGraph", {"name": GRAPH["injectableName"],
                                                      "target": node, "options": {}})  # fmt: skip
            graphs[reply["graphId"]] = node
        kind, body = await client.call("runTaskGraph", {"name": GRAPH["injectableName"],
                                                        "target": nodes[0]})  # fmt: skip
        assert kind == "error" and body["error"]["code"] == "busy", body
        kind, body = await client.call("runTaskGraph", {"name": "Graph.Nope", "target": nodes[0]})
        assert kind == "error" and body["error"]["code"] == "not_found", body
        active = await client.rpc("getActiveTaskGraphs", {})
        ours = {g["graphId"] for g in active["graphs"]} & set(graphs)
        print(f"runTaskGraph x{len(graphs)}; getActiveTaskGraphs lists {len(ours)} of them;"
              " busy and not_found refusals as documented")  # fmt: skip
        cancelled = next(iter(graphs))
        reply = await client.rpc("cancelTaskGraph", {"graphId": cancelled})
        assert reply["status"] == "cancelled", reply

        # Kill while the 4-second waits run: every ping has ended, some rests have started.
        def pings_done() -> bool:
            ends = client.finished("task.finished.")
            return sum(1 for e in ends.values() if e["label"] == "ping") >= len(graphs) - 1

        await client.until(pings_done, 120)
        before = dict(client.finished("task.finished."))
        server.send_signal(signal.SIGKILL)
        server.wait()
        killed = time.monotonic()
        print(f"SIGKILL after {killed - run_at:.1f} s: {len(before)} task.finished seen before it")
        server = start_server(data, db, bus, agent, api, lease)
        up = await wait_for("restarted controller answers", client.serving, 120)

        def all_ended() -> bool:
            return set(graphs) <= set(client.finished("graph.finished."))

        with contextlib.suppress(TimeoutError):  # what did not end is reported below
            await client.until(all_ended, 120 + 4 * lease)
        done_at = time.monotonic()
        ended = client.finished("graph.finished.")
        missing = [g for g in graphs if g not in ended]
        for graph_id in missing:  # an event committed but not published when it died
            row = await asyncio.to_thread(api_get, api, token, f"/api/v1/graphs/{graph_id}")
            ended[graph_id] = {"status": row["status"], "fromRow": True}
        print(f"restart: answering {up:.1f} s after the kill; last graph.finished"
              f" {done_at - killed:.1f} s after the kill (lease {lease:g} s, rest 4 s);"
              f" {len(missing)} graph ends read from rows, not events")  # fmt: skip

        # Verdicts from the events.
        statuses = {g: e["status"] for g, e in ended.items() if g in graphs}
        assert statuses[cancelled] == "cancelled", statuses[cancelled]
        others = [s for g, s in statuses.items() if g != cancelled]
        for end in client.finished("task.finished.").values():
            if statuses.get(end["graphId"]) == "failed" and end.get("error"):
                print(f"  failed graph {end['graphId'][:8]}: {end['label']} {end['state']}:"
                      f" {end['error']}")  # fmt: skip
        assert all(s == "succeeded" for s in others), others
        repeats: dict[str, int] = {}
        for _, key, _ in client.events:
            if key.startswith("task.finished."):
                repeats[key] = repeats.get(key, 0) + 1
        again = [k for k, n in repeats.items() if n > 1 and before.get(k.split(".", 2)[2], {})
                 .get("state") == "succeeded"]  # fmt: skip
        assert not again, f"tasks that succeeded before the kill ended again: {again}"
        states: dict[str, dict[str, int]] = {}
        for end in client.finished("task.finished.").values():
            if end["graphId"] in graphs and end["graphId"] != cancelled:
                per = states.setdefault(end["label"], {})
                per[end["state"]] = per.get(end["state"], 0) + 1
        print(f"task ends by label: {json.dumps(states, sort_keys=True)}")
        for label, state in EXPECTED.items():
            assert set(states.get(label, {state: 0})) <= {state}, (label, states.get(label))
        final = await client.rpc("getActiveTaskGraphs", {})
        left = {g["graphId"] for g in final["graphs"]} & set(graphs)
        assert not left, left
        print(f"verified: {len(others)} graphs succeeded, 1 cancelled, none active;"
              " no task that succeeded before the SIGKILL ran again")  # fmt: skip
    finally:
        for proc in (sim, server):
            proc.terminate()
        for proc in (sim, server):
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
        await client.conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=20)
    parser.add_argument("--lease", type=float, default=5.0)
    args = parser.parse_args()
    base_bus = os.environ.get("HWFLEET_TEST_AMQP", "amqp://guest:guest@127.0.0.1:5672/")
    print(f"load: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    db = asyncio.run(create_database("hwfleet_outsider"))
    try:
        with (
            temporary_vhost(base_bus, "hwfleet-outsider") as bus,
            tempfile.TemporaryDirectory(prefix="hwfleet-outsider-") as work,
        ):
            if bus is None:
                raise SystemExit("needs rabbitmqctl for a vhost of its own")
            asyncio.run(scenario(args.devices, args.lease, db, bus, Path(work)))
    finally:
        asyncio.run(drop_database(db))


if __name__ == "__main__":
    main()
