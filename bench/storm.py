"""Enrollment and reconnect storms: N simulated stream devices from cold against a fresh controller.

What a factory rack powering on (or a site after an outage) does to one
controller, as a user would see it. The controller runs as ``hwfleet server``
in its own process (its RSS is read from /proc), the devices as ``hwfleet sim``
in another; both start from empty data directories. Printed:

* **enrolled** — seconds from the simulator's start until every device holds an
  accepted key (``GET /api/v1/keys``), and how many enrollments the controller
  logged as accepted: exactly N when nothing was signed twice;
* **online** — until every device is online (``GET /api/v1/devices``);
* **ping-all** — ``POST /api/v1/devices/ping {"all": true}`` (what
  ``hwfleet ping --all`` does), ``--pings`` times in a row (5 by default): each
  time, how many answered and the CPU the controller and the simulators used
  meanwhile, and the median and the slowest;
* **controller RSS** — idle with no device, and with N connected, and per link;
* **restart** — the controller is stopped and started again on the same ports
  and data; seconds until all N are online again, and refused/failed links
  the simulator logged meanwhile.

    .venv/bin/python bench/storm.py [--devices 1000 10000]

Goals (issue 18): 1,000 enrolled in ≤ 10 s with exactly 1,000 accepted
enrollments, 10,000 in ≤ 120 s; ping-all of 10,000 ≤ 2 s; controller ≤ 1 GB
with 10,000 links; back online after a restart ≤ 60 s.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import json
import os
import re
import shutil
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any, NamedTuple

HWFLEET = [sys.executable, "-m", "hwfleet"]
PASSWORD = "bench-only-storm-password"  # noqa: S105 - a throwaway controller's secret
ACCEPTED = re.compile(r"enrollment of device \S+ \(key \S+\) from \S+: accepted$", re.M)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def cpu_s(pid: int) -> float:
    """User + system CPU seconds the process has used (a figure the machine's load does not
    inflate, unlike wall time on a shared machine)."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
        fields = stat.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


class Server:
    """``hwfleet server`` on fixed ports, so a restart keeps the agents' address."""

    def __init__(self, data: Path, agent_port: int, api_port: int) -> None:
        self.data = data
        self.agent = f"127.0.0.1:{agent_port}"
        self.api = f"http://127.0.0.1:{api_port}"
        self.log = data / "server.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, deadline: float) -> None:
        offset = self.log.stat().st_size if self.log.exists() else 0
        with open(self.log, "a") as log:
            self.proc = subprocess.Popen(
                [
                    *HWFLEET,
                    "server",
                    "--data-dir",
                    str(self.data),
                    "--agent-listen",
                    self.agent,
                    "--api-listen",
                    self.api.removeprefix("http://"),
                    "--enroll-password",
                    PASSWORD,
                    "--enroll-password-per-source",
                    "100000",
                    "--enroll-password-fleet-limit",
                    "0",
                    "--log-level",
                    "info",
                ],
                stderr=log,
                stdout=subprocess.DEVNULL,
            )
        while "agents on" not in self.log.read_text()[offset:]:
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise SystemExit(f"the controller did not start: see {self.log}")
            time.sleep(0.05)  # waiting for another process's log line, bounded

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(60)
            self.proc = None

    def token(self) -> str:
        return (self.data / "operator.token").read_text().strip()

    def get(self, path: str) -> Any:
        request = urllib.request.Request(  # noqa: S310 - loopback only
            self.api + path, headers={"Authorization": f"Bearer {self.token()}"}
        )
        with urllib.request.urlopen(request, timeout=120) as reply:  # noqa: S310
            return json.load(reply)

    def post(self, path: str, body: dict[str, Any]) -> Any:
        request = urllib.request.Request(  # noqa: S310 - loopback only
            self.api + path,
            data=json.dumps(body).encode(),
            headers={
                "Authorization": f"Bearer {self.token()}",
                "Content-Type": "application/json",
            },
        )
        with urllib.request.urlopen(request, timeout=120) as reply:  # noqa: S310
            return json.load(reply)

    def accepted_logged(self) -> int:
        return len(ACCEPTED.findall(self.log.read_text()))

    def count(self, path: str, field: str, value: str) -> int:
        return sum(1 for row in self.get(path) if row.get(field) == value)

    def db_count(self, sql: str) -> int:
        """A count read from the controller's SQLite file (WAL: readers never block it).

        Polling the REST listings ten times a second costs the controller more than a
        thousand enrollments do (every key with its certificate, every device row), so
        the bench watches the database and asks the API once the count is reached.
        """
        try:
            with contextlib.closing(
                sqlite3.connect(f"file:{self.data / 'hwfleet.db'}?mode=ro", uri=True, timeout=5)
            ) as db:
                return int(db.execute(sql).fetchone()[0])
        except sqlite3.OperationalError:  # not created yet, or busy past the timeout
            return 0

    def enrolled(self) -> int:
        return self.db_count("SELECT count(*) FROM agent_keys WHERE state = 'accepted'")

    def online(self) -> int:
        return self.db_count("SELECT count(*) FROM devices WHERE state = 'online'")


def start_sim(
    server: Server, fingerprint: str, data: Path, index: int, count: int, log_path: Path
) -> subprocess.Popen[bytes]:
    """One ``hwfleet sim`` of ``count`` devices: seed ``index``, addresses 127.(1+index).0.1…"""
    with open(log_path, "w") as log:
        return subprocess.Popen(
            [
                *HWFLEET,
                "sim",
                "--controller",
                server.agent,
                "--devices",
                str(count),
                "--seed",
                str(index),
                "--address-base",
                f"127.{1 + index}.0.1",
                "--enroll-password",
                PASSWORD,
                "--controller-fingerprint",
                fingerprint,
                "--data-dir",
                str(data / f"simdata{index}"),
                "--no-discovery",
                # MDP is not what is measured, and UDP 12345 on the sim's addresses may be
                # taken by another simulator on a shared machine.
                "--no-mdp",
                "--log-level",
                "warning",
            ],
            stderr=log,
            stdout=subprocess.DEVNULL,
        )


def started_at(log: Path) -> int:
    """1 once this simulator has built and started its devices."""
    return int(log.exists() and "simulated devices started" in log.read_text())


def wait_for(what: str, check: Any, count: int, deadline: float, every: float) -> None:
    while (seen := check()) < count:
        if time.monotonic() > deadline:
            raise SystemExit(f"{what}: only {seen}/{count} before the deadline")
        time.sleep(every)  # polling other processes, bounded by the deadline


class Ping(NamedTuple):
    wall: float
    answered: int
    controller_cpu: float
    sims_cpu: float


def ping_all(server: Server, sims: list[subprocess.Popen[bytes]]) -> Ping:
    """One ``POST /api/v1/devices/ping {"all": true}``: its wall time, how many answered,
    and the CPU the controller and the simulators used meanwhile (on a machine with few
    cores, they compete for it)."""
    assert server.proc is not None
    cpu0 = cpu_s(server.proc.pid)
    sims0 = sum(cpu_s(sim.pid) for sim in sims)
    p0 = time.monotonic()
    pinged = server.post("/api/v1/devices/ping", {"all": True})
    wall = time.monotonic() - p0
    return Ping(
        wall,
        sum(1 for r in pinged.values() if r.get("ok")),
        cpu_s(server.proc.pid) - cpu0,
        sum(cpu_s(sim.pid) for sim in sims) - sims0,
    )


def classify(lines: list[str]) -> tuple[int, int, collections.Counter[str]]:
    """Simulator warnings during a restart: connections refused while the controller was
    down (expected), turned away for lack of resources (the goal: none), and the rest by
    message with the numbers taken out."""
    down = away = 0
    other: collections.Counter[str] = collections.Counter()
    for line in lines:
        lowered = line.lower()
        if "connect call failed" in lowered or "connection refused" in lowered:
            down += 1
        elif "too many" in lowered or "busy" in lowered or "retry after" in lowered:
            away += 1
        else:
            other[re.sub(r"[0-9]+", "N", line.split(": ", 1)[-1])[:120]] += 1
    return down, away, other


def storm(count: int, timeout: float, sims: int, keep: Path | None = None, pings: int = 5) -> None:
    poll = 0.1 if count <= 1000 else 0.5
    with tempfile.TemporaryDirectory(prefix="hwfleet-storm-") as tmp:
        data = Path(tmp)
        server = Server(data, free_port(), free_port())
        sim_logs = [data / f"sim{i}.log" for i in range(sims)]
        procs: list[subprocess.Popen[bytes]] = []
        try:
            # Inside the try: a controller that does not start still has its log kept.
            server.start(time.monotonic() + 60)
            idle_rss = rss_mb(server.proc.pid)  # type: ignore[union-attr]
            fingerprint = re.search(r"controller CA fingerprint (\S+)", server.log.read_text())
            assert fingerprint, "no CA fingerprint in the controller's log"
            # The devices run in ``sims`` processes (distinct seeds, so distinct uuids, and
            # distinct address blocks): one Python process doing 1,000 TLS handshakes and key
            # generations would otherwise be what is measured, not the controller.
            shares = [count // sims + (1 if i < count % sims else 0) for i in range(sims)]
            t0 = time.monotonic()
            procs += [
                start_sim(server, fingerprint.group(1), data, index, share, sim_logs[index])
                for index, share in enumerate(shares)
                if share
            ]
            deadline = t0 + timeout
            wait_for(
                "started", lambda: sum(started_at(log) for log in sim_logs), sims, deadline, 0.05
            )
            started = time.monotonic() - t0
            cpu0 = cpu_s(server.proc.pid)  # type: ignore[union-attr]
            sims_cpu0 = sum(cpu_s(sim.pid) for sim in procs)
            wait_for("enrolled", server.enrolled, count, deadline, poll)
            enrolled = time.monotonic() - t0
            enroll_cpu = cpu_s(server.proc.pid) - cpu0  # type: ignore[union-attr]
            sims_cpu = sum(cpu_s(sim.pid) for sim in procs) - sims_cpu0
            wait_for("online", server.online, count, deadline, poll)
            online = time.monotonic() - t0
            seen = server.count("/api/v1/devices?discovered=false", "state", "online")
            assert seen == count, f"the database says {count} online, the API {seen}"
            keys = server.get("/api/v1/keys")
            samples = [ping_all(server, procs) for _ in range(pings)]
            full_rss = rss_mb(server.proc.pid)  # type: ignore[union-attr]
            print(
                f"{count:>6} devices from cold: all enrolled in {enrolled:.1f} s, online in "
                f"{online:.1f} s from the simulators' start ({enrolled - started:.1f} s and "
                f"{online - started:.1f} s once all {count} devices were built, after "
                f"{started:.1f} s); accepted enrollments logged {server.accepted_logged()}, "
                f"key rows {len(keys)} ({sum(k['state'] == 'accepted' for k in keys)} accepted)"
            )
            print(
                f"        CPU while enrolling: controller {enroll_cpu:.1f} s "
                f"({enroll_cpu * 1000 / count:.1f} ms per device), simulators {sims_cpu:.1f} s "
                f"(and {sims_cpu0:.1f} s starting: interpreter, imports, building the devices)"
            )
            walls = [sample.wall for sample in samples]
            print(
                f"        ping-all: {samples[0].answered}/{count} answered in {walls[0]:.2f} s; "
                f"{pings} in a row: median {statistics.median(walls):.2f} s, "
                f"max {max(walls):.2f} s"
            )
            for n, sample in enumerate(samples, 1):
                print(
                    f"          #{n}: {sample.answered}/{count} answered in {sample.wall:.2f} s; "
                    f"CPU meanwhile: controller {sample.controller_cpu:.2f} s, "
                    f"simulators {sample.sims_cpu:.2f} s"
                )
            print(
                f"        controller RSS: {idle_rss:.0f} MB idle, {full_rss:.0f} MB with {count} "
                f"links ({(full_rss - idle_rss) * 1024 / count:.1f} KiB per link)"
            )
            before = [log.read_text().count("\n") for log in sim_logs]
            server.stop()
            t1 = time.monotonic()
            server.start(t1 + 60)
            wait_for("back online", server.online, count, t1 + timeout, poll)
            back = time.monotonic() - t1
            lines = [
                line
                for log, skip in zip(sim_logs, before, strict=True)
                for line in log.read_text().splitlines()[skip:]
            ]
            down, away, other = classify(lines)
            print(
                f"        controller restart: all {count} back online in {back:.1f} s; "
                f"simulator warnings meanwhile {len(lines)}: {down} refused while the controller "
                f"was down, {away} turned away for load (busy / too many), {sum(other.values())} "
                f"other; accepted enrollments logged since: {server.accepted_logged()}"
            )
            for text, n in other.most_common(3):
                print(f"          {n} x {text}")
        except SystemExit:
            for path in (server.log, *sim_logs):
                if not path.exists():  # the controller did not start: no simulator ran
                    continue
                lines = path.read_text().splitlines()
                name = path.name
                print(f"--- {name}: {len(lines)} lines, last 15:", *lines[-15:], sep="\n")
            raise
        finally:
            if keep is not None:
                keep.mkdir(parents=True, exist_ok=True)
            for path in (server.log, *sim_logs):
                if keep is not None and path.exists():
                    try:
                        shutil.copy(path, keep / path.name)
                    except OSError as exc:  # the processes below must still be stopped
                        print(f"could not keep {path.name}: {exc}")
            for sim in procs:
                sim.terminate()
            for sim in procs:
                try:
                    sim.wait(120)
                except subprocess.TimeoutExpired:
                    sim.kill()
            server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, nargs="*", default=[1000])
    parser.add_argument("--timeout", type=float, default=300.0, help="per phase, seconds")
    parser.add_argument("--keep", type=Path, help="copy the logs here")
    parser.add_argument(
        "--sims", type=int, default=2, help="simulator processes the devices are split over"
    )
    parser.add_argument(
        "--pings", type=int, default=5, help="ping-all samples, taken one after another"
    )
    args = parser.parse_args()
    if args.pings < 1:
        parser.error("--pings must be at least 1")
    os.environ.setdefault("PYTHONWARNINGS", "ignore")
    for count in args.devices:
        storm(count, args.timeout, args.sims, args.keep, args.pings)


if __name__ == "__main__":
    main()
