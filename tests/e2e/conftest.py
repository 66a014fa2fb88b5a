"""Real processes: `hwfleet server` and `hwfleet sim`, driven through the command line."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.processes import stop
from tests.rabbit import temporary_vhost

if TYPE_CHECKING:
    from tests.e2e.scan_rig import ScanRig

HWFLEET = [sys.executable, "-m", "hwfleet"]
PASSWORD = "e2e-enrollment-secret"


@dataclass
class Server:
    process: subprocess.Popen[str]
    data_dir: Path
    agent: str
    api: str

    def env(self) -> dict[str, str]:
        return {**os.environ, "HWFLEET_API": self.api, "HWFLEET_DATA_DIR": str(self.data_dir)}

    def cli(
        self, *args: str, check: bool = True, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [*HWFLEET, *args], env=self.env(), capture_output=True, text=True, timeout=timeout
        )
        if check and done.returncode != 0:
            raise AssertionError(
                f"hwfleet {' '.join(args)} exited {done.returncode}: {done.stderr}"
            )
        return done

    def json(self, *args: str) -> object:
        out = self.cli(*args, "--json").stdout
        return json.loads(out)  # exactly one document: json.loads fails on trailing output


def start_server(
    data_dir: Path, *extra: str, agent_listen: str = "127.0.0.1:0", log_name: str = "server.log"
) -> Server:
    """Start `hwfleet server` on free ports; its log goes to a file (a pipe could fill up).

    ``agent_listen`` pins the agent port (a restarted controller keeps its agents' address);
    ``log_name`` keeps an earlier run's log when the same data dir is started again.
    """
    data_dir.mkdir(parents=True, exist_ok=True)
    log_path = data_dir / log_name
    with log_path.open("w") as log:
        process = subprocess.Popen(
            [
                *HWFLEET,
                "server",
                "--data-dir",
                str(data_dir),
                "--agent-listen",
                agent_listen,
                "--api-listen",
                "127.0.0.1:0",
                "--enroll-password",
                PASSWORD,
                *extra,
            ],
            stdout=subprocess.DEVNULL,
            stderr=log,
            text=True,
        )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        match = re.search(r"agents on (\S+), API (\S+)", log_path.read_text())
        if match:
            return Server(process, data_dir, match.group(1), match.group(2))
        if process.poll() is not None:
            raise AssertionError(f"server exited {process.returncode}: {log_path.read_text()}")
        time.sleep(0.05)  # waiting for another process's log line, bounded by the deadline
    process.kill()
    raise AssertionError("server did not report its addresses")


def start_sim(server: Server, tmp_path: Path, *devices: str) -> subprocess.Popen[str]:
    """`hwfleet sim` against ``server`` with the enrollment password; ``devices`` says which
    (``--devices 3``, ``--profile FILE``) and anything more. Keys go under ``tmp_path/sim``,
    the log to ``tmp_path/sim.log``."""
    with (tmp_path / "sim.log").open("w") as log:
        return subprocess.Popen(
            [
                *HWFLEET,
                "sim",
                "--controller",
                server.agent,
                *devices,
                "--data-dir",
                str(tmp_path / "sim"),
                "--enroll-password",
                PASSWORD,
            ],
            stdout=subprocess.DEVNULL,
            stderr=log,
            text=True,
        )


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    srv = start_server(tmp_path / "ctl")
    try:
        yield srv
    finally:
        stop(srv.process)


def wait_until(predicate: object, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(0.1)  # polling another process's state, bounded by the deadline
    raise AssertionError(f"not true within {timeout} s: {predicate}")


@pytest.fixture
def amqp_vhost(amqp_vhost_url: str) -> Iterator[str]:
    """A RabbitMQ vhost of this test's own, so that what another test left there (durable
    device queues, replies for the same operationid of another data dir) cannot reach it."""
    with temporary_vhost(amqp_vhost_url, "hwfleet-e2e") as url:
        yield url or amqp_vhost_url  # a remote broker: share the session's vhost


@pytest.fixture
def scan_rig(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[..., ScanRig]]:
    """``scan_rig(carrier, bus, seed)``: mes-sim, controller and fleet, every process stopped
    afterwards (see :mod:`tests.e2e.scan_rig`)."""
    from tests.e2e.scan_rig import make_rig

    for first in ("amqp_vhost", "pg_url"):
        if first in request.fixturenames:
            # Set up first so that it is torn down last: processes must stop before their
            # vhost or database is deleted (they would hang reconnecting instead of stopping).
            request.getfixturevalue(first)

    rigs: list[ScanRig] = []

    def make(
        carrier: str = "stream", bus: str | None = None, seed: int = 0, db: str | None = None
    ) -> ScanRig:
        rig = make_rig(tmp_path / f"rig{len(rigs)}", carrier, bus, seed, db)
        rigs.append(rig)
        return rig

    try:
        yield make
    finally:
        for rig in rigs:
            rig.close()
