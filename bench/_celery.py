"""The Celery reference of bench/graphs.py: 1,000 chains of 4 no-op tasks, measured here.

Celery on the same RabbitMQ (a temporary vhost), a Redis result backend, a worker of two
processes (prefork) started as its own program. Only the last task of each chain is
waited on (``AsyncResult.get``), as a Celery user would. Nothing about the tasks' states is
kept beyond Redis's result keys. Run by ``bench/graphs.py --celery``; also the worker's app
(``celery -A _celery worker``) — the worker finds its broker in the environment.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from celery import Celery, chain

_BROKER = "HWFLEET_BENCH_CELERY_BROKER"
_BACKEND = "HWFLEET_BENCH_CELERY_BACKEND"
_QUEUE = "HWFLEET_BENCH_CELERY_QUEUE"


def make_app() -> Celery:
    app = Celery(
        "hwfleet_bench",
        broker=os.environ.get(_BROKER, "amqp://guest:guest@127.0.0.1:5672//"),
        backend=os.environ.get(_BACKEND, "redis://127.0.0.1:6379/0"),
    )
    app.conf.task_default_queue = os.environ.get(_QUEUE, "hwfleet-bench")
    app.conf.worker_hijack_root_logger = False
    app.conf.broker_connection_retry_on_startup = True

    @app.task(name="noop", shared=False)  # type: ignore[untyped-decorator]
    def noop(*_: Any) -> None:
        return None

    return app


app = make_app()


def run_reference(broker: str, chains: int, length: int, timeout: float = 600.0) -> float:
    """Start a 2-process worker, run the chains, return tasks per second."""
    queue = f"hwfleet-bench-{uuid.uuid4().hex[:8]}"
    env = {
        **os.environ,
        _BROKER: broker,
        _BACKEND: os.environ.get(_BACKEND, "redis://127.0.0.1:6379/0"),
        _QUEUE: queue,
    }
    os.environ.update({k: env[k] for k in (_BROKER, _BACKEND, _QUEUE)})
    client = make_app()
    celery = shutil.which("celery", path=str(Path(sys.executable).parent)) or "celery"
    worker = subprocess.Popen(
        [celery, "-A", "_celery", "worker", "-c", "2", "-P", "prefork", "-Q", queue,
         "--loglevel", "error", "--without-gossip", "--without-mingle", "--without-heartbeat"],
        cwd=Path(__file__).parent, env=env,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        noop = client.tasks["noop"]
        # Warm-up: one chain through, so the worker is up before the clock starts.
        chain(*(noop.si() for _ in range(length))).apply_async().get(timeout=120)
        start = time.perf_counter()
        results = [chain(*(noop.si() for _ in range(length))).apply_async() for _ in range(chains)]
        deadline = start + timeout
        for result in results:
            result.get(timeout=max(1.0, deadline - time.perf_counter()))
        wall = time.perf_counter() - start
    finally:
        worker.terminate()
        worker.wait(30)
    return chains * length / wall
