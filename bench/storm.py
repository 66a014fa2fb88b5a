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
  ``hwfleet ping --all`` does): time and how many answered;
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
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

HWFLEET = [sys.executable, "-m", "hwfleet"]
PASSWORD = "bench-only-storm-password"  # noqa: S105 - a throwaway controller's secret
ACCEPTED = re.compile(r"enrollment of device \S+ \(key \S+\) from \S+: accepted$", re.M)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


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


def wait_for(what: str, check: Any, count: int, deadline: float, every: float) -> None:
    while (seen := check()) < count:
        if time.monotonic() > deadline:
            raise SystemExit(f"{what}: only {seen}/{count} before the deadline")
        time.sleep(every)  # polling other processes, bounded by the deadline


def storm(count: int, timeout: float) -> None:
    poll = 0.1 if count <= 1000 else 0.5
    with tempfile.TemporaryDirectory(prefix="hwfleet-storm-") as tmp:
        data = Path(tmp)
        server = Server(data, free_port(), free_port())
        server.start(time.monotonic() + 60)
        idle_rss = rss_mb(server.proc.pid)  # type: ignore[union-attr]
        fingerprint = re.search(r"controller CA fingerprint (\S+)", server.log.read_text())
        assert fingerprint, "no CA fingerprint in the controller's log"
        sim_log = data / "sim.log"
        with open(sim_log, "w") as log:
            t0 = time.monotonic()
            sim = subprocess.Popen(
                [
                    *HWFLEET,
                    "sim",
                    "--controller",
                    server.agent,
                    "--devices",
                    str(count),
                    "--enroll-password",
                    PASSWORD,
                    "--controller-fingerprint",
                    fingerprint.group(1),
                    "--data-dir",
                    str(data / "simdata"),
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
        try:
            deadline = t0 + timeout
            wait_for(
                "enrolled",
                lambda: server.count("/api/v1/keys", "state", "accepted"),
                count,
                deadline,
                poll,
            )
            enrolled = time.monotonic() - t0
            wait_for(
                "online",
                lambda: server.count("/api/v1/devices?discovered=false", "state", "online"),
                count,
                deadline,
                poll,
            )
            online = time.monotonic() - t0
            keys = server.get("/api/v1/keys")
            p0 = time.monotonic()
            pinged = server.post("/api/v1/devices/ping", {"all": True})
            ping_s = time.monotonic() - p0
            answered = sum(1 for r in pinged.values() if r.get("ok"))
            p0 = time.monotonic()
            server.post("/api/v1/devices/ping", {"all": True})
            ping2_s = time.monotonic() - p0
            full_rss = rss_mb(server.proc.pid)  # type: ignore[union-attr]
            print(
                f"{count:>6} devices from cold: all enrolled in {enrolled:.1f} s, online in "
                f"{online:.1f} s; accepted enrollments logged {server.accepted_logged()}, "
                f"key rows {len(keys)} ({sum(k['state'] == 'accepted' for k in keys)} accepted)"
            )
            print(
                f"        ping-all: {answered}/{count} answered in {ping_s:.2f} s "
                f"(again: {ping2_s:.2f} s)"
            )
            print(
                f"        controller RSS: {idle_rss:.0f} MB idle, {full_rss:.0f} MB with {count} "
                f"links ({(full_rss - idle_rss) * 1024 / count:.1f} KiB per link)"
            )
            before = sim_log.read_text().count("\n")
            server.stop()
            t1 = time.monotonic()
            server.start(t1 + 60)
            wait_for(
                "back online",
                lambda: server.count("/api/v1/devices?discovered=false", "state", "online"),
                count,
                t1 + timeout,
                poll,
            )
            back = time.monotonic() - t1
            lines = sim_log.read_text().splitlines()[before:]
            refused = sum("refused" in line.lower() or "too many" in line for line in lines)
            print(
                f"        controller restart: all {count} back online in {back:.1f} s; "
                f"simulator warnings meanwhile {len(lines)} (refused/too many: {refused}); "
                f"accepted enrollments logged since: {server.accepted_logged()}"
            )
        except SystemExit:
            for name in ("server.log", "sim.log"):
                lines = (data / name).read_text().splitlines()
                print(f"--- {name}: {len(lines)} lines, last 15:", *lines[-15:], sep="\n")
            raise
        finally:
            sim.terminate()
            try:
                sim.wait(120)
            except subprocess.TimeoutExpired:
                sim.kill()
            server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, nargs="*", default=[1000])
    parser.add_argument("--timeout", type=float, default=300.0, help="per phase, seconds")
    args = parser.parse_args()
    os.environ.setdefault("PYTHONWARNINGS", "ignore")
    for count in args.devices:
        storm(count, args.timeout)


if __name__ == "__main__":
    main()
