"""Task graphs at fleet scale: 1,000 graphs of 4 agent tasks over 1,000 simulated devices.

Graphs start as `hwfleet graphs run --all` starts them (one transaction for all).
The controller (and its graph engine) runs in this process; the simulated fleet runs in
another (`hwfleet sim`, stream carrier). Every task is ``Task.Base.Agent.Run`` of
``ping``: a real round trip to the device's agent, and every state change (claim, end,
readiness, graph end, events) is committed to the store before the next step. Prints the
wall time from the first run to the last ``graph.finished``, tasks/s, and this process's
CPU per task (controller only: the fleet's CPU is the other process's).

Reference: Celery 5.7 on RabbitMQ with a Redis result backend and a 2-process worker,
1,000 chains of 4 no-op tasks, no state recorded. The issue quotes 4,000 tasks in 12.4 s
(323 tasks/s) on this kind of machine; ``--celery`` measures it in the same run (same
RabbitMQ 127.0.0.1:5672, a temporary vhost; Redis 127.0.0.1:6379) and prints the ratio.
RackHD publishes no figures. Goals: ahead of Celery; <= 2 ms controller CPU per task.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import subprocess
import sys
import tempfile
import time

from _postgres import create_database, drop_database

from hwfleet.bus.base import Delivery
from hwfleet.cli.common import run
from hwfleet.controller.app import Controller
from hwfleet.settings import ServerSettings

CELERY_TASKS_PER_S = 323.0
#: Where --profile writes the controller's cProfile stats ("" for none).
PROFILE = ""
PASSWORD = secrets.token_urlsafe(16)
TASKS = 4
GRAPH = {
    "friendlyName": "Bench: four pings",
    "injectableName": "Graph.Bench.FourPings",
    "tasks": [
        {"label": "p0", "taskName": "Task.Hwfleet.Ping"},
        *(
            {
                "label": f"p{i}",
                "taskName": "Task.Hwfleet.Ping",
                "waitOn": {f"p{i - 1}": "succeeded"},
            }
            for i in range(1, TASKS)
        ),
    ],
}


async def bench(count: int, backend: str, in_flight: int) -> float:
    db = ""
    if backend == "postgresql":
        db = await create_database("hwfleet_bench")
    try:
        with tempfile.TemporaryDirectory(prefix="hwfleet-bench-") as data_dir:
            settings = ServerSettings(
                data_dir=data_dir,
                agent_listen="127.0.0.1:0",
                api_listen="127.0.0.1:0",
                bus="memory://",
                db=db,
                call_timeout=30.0,
                offline_after=600.0,
                enroll_password=PASSWORD,
                graph_max_in_flight=in_flight,
            )
            ctl = Controller(settings)
            await ctl.start()
            sim = _start_sim(ctl, count, data_dir)
            try:
                return await _run(ctl, count, backend, in_flight)
            finally:
                sim.terminate()
                await asyncio.to_thread(sim.wait, 30)
                await ctl.close()
    finally:
        if db:
            await drop_database(db)


def _start_sim(ctl: Controller, count: int, data_dir: str) -> subprocess.Popen[bytes]:
    host, port = ctl.gateway.address
    return subprocess.Popen(
        [
            sys.executable, "-m", "hwfleet.cli", "sim",
            "--controller", f"{host}:{port}", "--devices", str(count),
            "--enroll-password", PASSWORD,
            "--controller-fingerprint", ctl.admission.ca.fingerprint(),
            "--data-dir", os.path.join(data_dir, "sim"),
            "--no-discovery", "--log-level", "error",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip


async def _run(ctl: Controller, count: int, backend: str, in_flight: int) -> float:
    start = time.perf_counter()
    while len(ctl.devices.online()) < count:
        if time.perf_counter() - start > 600:
            raise SystemExit(f"only {len(ctl.devices.online())}/{count} connected")
        await asyncio.sleep(0.05)  # waiting on another process; bounded above
    # Connect-time work still running (each device's diagnostics key fetched and written to
    # disk, after the device is online) is not graph work: start the clock once it is done
    # (a device without its diagnostics endpoint never records one: 5 s without a fetch).
    idle_since = time.perf_counter()
    while len(ctl.mdp_keys.known.addresses()) < count:
        if ctl.mdp_keys._tasks:
            idle_since = time.perf_counter()
        elif time.perf_counter() - idle_since > 5:
            break
        await asyncio.sleep(0.05)  # waiting on the devices' replies; bounded by the idle time
    print(f"{backend:>10}: {count} devices connected in {time.perf_counter() - start:.1f} s")
    nodes = sorted(ctl.devices.online())
    engine = ctl.graphs.engine
    await engine.define_graph(GRAPH)
    statuses: dict[str, str] = {}
    all_done = asyncio.Event()

    async def finished(delivery: Delivery) -> None:
        import json

        data = json.loads(delivery.body)["data"]
        statuses[data["graphId"]] = data["status"]
        if len(statuses) >= count:
            all_done.set()

    sub = await ctl.bus.subscribe("events", "graph.finished.*", finished)
    profiler = None
    if PROFILE:
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()
    cpu0, wall0 = time.process_time(), time.perf_counter()
    started_graphs = await ctl.graphs.run_many(GRAPH["injectableName"], nodes, {})
    assert all("graphId" in g for g in started_graphs), started_graphs
    started = time.perf_counter() - wall0
    async with asyncio.timeout(600):
        await all_done.wait()
    wall = time.perf_counter() - wall0
    cpu = time.process_time() - cpu0
    if profiler is not None:
        profiler.disable()
        profiler.dump_stats(f"{PROFILE}.{backend}")
    await sub.cancel()
    tasks = count * TASKS
    ok = sum(1 for s in statuses.values() if s == "succeeded")
    rate = tasks / wall
    print(
        f"{backend:>10}: {count} graphs x {TASKS} agent tasks ({ok} succeeded) in {wall:.2f} s"
        f" = {rate:.0f} tasks/s; controller CPU {cpu * 1000 / tasks:.2f} ms/task"
        f" (max {in_flight} tasks in flight; starting the graphs took {started:.2f} s)"
    )
    return rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=1000)
    parser.add_argument("--db", nargs="*", default=["sqlite", "postgresql"])
    parser.add_argument("--in-flight", type=int, default=100)
    parser.add_argument(
        "--celery", action="store_true", help="also measure the Celery reference (needs Redis)"
    )
    parser.add_argument("--chains", type=int, default=1000, help="Celery chains of 4 (1000)")
    parser.add_argument(
        "--profile", metavar="FILE", help="cProfile the controller during the run (FILE.<db>)"
    )
    args = parser.parse_args()
    global PROFILE
    PROFILE = args.profile or ""
    print(f"load: {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} {os.getloadavg()[2]:.2f}")
    os.environ.setdefault("PYTHONWARNINGS", "ignore")
    rates = {backend: run(bench(args.devices, backend, args.in_flight)) for backend in args.db}
    reference, source = CELERY_TASKS_PER_S, "quoted in the issue, not re-run (--celery)"
    if args.celery:
        reference, source = _celery_reference(args.chains), "measured in this run"
        print(
            f"{'celery':>10}: {args.chains} chains x {TASKS} no-op tasks, 2-process worker,"
            f" Redis results = {reference:.0f} tasks/s"
        )
    for backend, rate in rates.items():
        print(
            f"{backend:>10}: {rate:.0f} tasks/s vs Celery {reference:.0f} tasks/s ({source}):"
            f" {rate / reference:.2f}x"
        )


def _celery_reference(chains: int) -> float:
    from _celery import run_reference
    from _rabbit import temporary_vhost

    base = os.environ.get("HWFLEET_TEST_AMQP", "amqp://guest:guest@127.0.0.1:5672/")
    with temporary_vhost(base, "hwfleet-bench-celery") as url:
        return run_reference(url or base, chains, TASKS)


if __name__ == "__main__":
    main()
