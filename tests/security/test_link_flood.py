"""Issue 21 High 3 and Medium 4: unauthenticated peers flooding the agent port.

Real processes on 127.0.0.1: ``hwfleet server``, ``hwfleet sim --devices 3``,
and ``flood_peer.py`` (stdlib only) as the attacker, each in its own process
so that the attacker's work never counts against what is measured.

* High 3: blank lines or pipelined requests on unidentified links kept the
  controller's event loop busy: ``/healthz`` took 11 to 15 s, pings 10 to 38 s, and
  heartbeats timed out. Measured here while the flood runs: the 90th
  percentile of ``GET /healthz`` and of a REST fleet ping stays under 100 ms.
* Medium 4: links holding unterminated ~1 MiB lines grew the controller by
  1.6 GiB, which stayed after they closed. Measured here: the controller's
  resident memory while 400 such links attack, and after they are gone.
"""

from __future__ import annotations

import contextlib
import json
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.e2e.conftest import Server, start_server, start_sim, stop, wait_until

pytestmark = pytest.mark.slow

FLOOD_PEER = Path(__file__).with_name("flood_peer.py")
#: Bound on the 90th percentile of each measured request during a flood.
LATENCY_BOUND = 0.100
SAMPLES = 40
#: Resident memory above the idle controller's: at the peak of a flood, and settled after it.
#: Measured for the flood below: before the fix +570 MiB at the peak and +550 MiB kept;
#: after, +200 to +260 MiB at the peak (asyncio's TLS buffers, some 0.5 to 1 MiB per
#: connection while the burst is handled, refused ones included) and +3 MiB settled.
PEAK_MIB = 400
SETTLED_MIB = 40


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    # The global limit pinned at 128 (the default is 512): 8 sources x 16 links fill it.
    srv = start_server(tmp_path / "ctl", "--anonymous-links", "128")
    try:
        yield srv
    finally:
        stop(srv.process)


@pytest.fixture
def fleet(server: Server, tmp_path: Path) -> Iterator[list[str]]:
    """Three simulated devices, online, with a 1 s heartbeat; yields their uuids."""
    process = start_sim(server, tmp_path, "--devices", "3", "--no-discovery")
    rest = Rest(server)
    try:

        def three_online() -> bool:
            assert process.poll() is None, (tmp_path / "sim.log").read_text()
            devices = rest.get("/api/v1/devices")
            return len(devices) == 3 and all(d["state"] == "online" for d in devices)

        wait_until(three_online, timeout=60)
        yield sorted(d["uuid"] for d in rest.get("/api/v1/devices"))
    finally:
        rest.close()
        stop(process)


class Rest:
    def __init__(self, server: Server) -> None:
        token = (server.data_dir / "operator.token").read_text().strip()
        self.client = httpx.Client(
            base_url=server.api, headers={"Authorization": f"Bearer {token}"}, timeout=60
        )

    def get(self, path: str) -> Any:
        reply = self.client.get(path)
        assert reply.status_code == 200, reply.text
        return reply.json()

    def timed(self, method: str, path: str, body: Any = None) -> tuple[float, Any]:
        started = time.perf_counter()
        reply = self.client.request(method, path, json=body)
        elapsed = time.perf_counter() - started
        assert reply.status_code == 200, reply.text
        return elapsed, reply.json()

    def close(self) -> None:
        self.client.close()


class Flood:
    """The attacker process: started, ready, then stopped with its report."""

    def __init__(self, mode: str, server: Server, sources: list[str], links: int) -> None:
        self.process = subprocess.Popen(
            [
                sys.executable,
                str(FLOOD_PEER),
                mode,
                server.agent,
                "--sources",
                ",".join(sources),
                "--links",
                str(links),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        ready = self.process.stdout.readline()  # it connects within its own 60 s deadline
        assert ready, "the attacker died before it was ready"
        self.ready = json.loads(ready)["ready"]

    def stop(self) -> dict[str, Any]:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.close()
        try:
            report: dict[str, Any] = json.loads(self.process.stdout.readline())
        finally:
            self.process.stdout.close()
            self.process.wait(30)
        return report


def sources(prefix: str, count: int) -> list[str]:
    return [f"{prefix}.{n + 1}" for n in range(count)]


def p90(samples: list[float]) -> float:
    return statistics.quantiles(samples, n=10)[-1]


@pytest.mark.parametrize("mode", ["blank", "pipeline"])
def test_flooding_unidentified_links_do_not_stall_the_controller(
    server: Server, fleet: list[str], mode: str, tmp_path: Path
) -> None:
    rest = Rest(server)
    # 8 sources x 16 links: the per-source limit and the global one, all of it.
    flood = Flood(mode, server, sources("127.80.0", 8), 16)
    health: list[float] = []
    pings: list[float] = []
    try:
        assert flood.ready == 128
        deadline = time.monotonic() + 120
        while len(pings) < SAMPLES and time.monotonic() < deadline:
            elapsed, _ = rest.timed("GET", "/healthz")
            health.append(elapsed)
            elapsed, result = rest.timed(
                "POST", "/api/v1/devices/ping", {"uuids": fleet, "timeout": 10}
            )
            pings.append(elapsed)
            assert all(r["ok"] for r in result.values()), result
    finally:
        report = flood.stop()
        rest.close()
    shown = (
        f"{mode}: healthz p50 {statistics.median(health) * 1000:.1f} ms p90 "
        f"{p90(health) * 1000:.1f} ms; ping p50 {statistics.median(pings) * 1000:.1f} ms p90 "
        f"{p90(pings) * 1000:.1f} ms; attacker {report}"
    )
    print(shown)
    assert len(pings) == SAMPLES, shown
    assert p90(health) < LATENCY_BOUND, shown
    assert p90(pings) < LATENCY_BOUND, shown
    # The devices never missed a heartbeat long enough to be dropped.
    assert "reconnecting" not in (tmp_path / "sim.log").read_text()
    rest = Rest(server)
    try:
        devices = rest.get("/api/v1/devices")
    finally:
        rest.close()
    assert sorted(d["uuid"] for d in devices if d["state"] == "online") == fleet


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmRSS for process {pid}")


class PeakRss:
    """Samples another process's resident memory every 20 ms in a thread; keeps the peak."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak = rss_mib(pid)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.wait(0.02):
            with contextlib.suppress(OSError):
                self.peak = max(self.peak, rss_mib(self.pid))

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)


def test_unterminated_lines_on_unidentified_links_are_bounded_and_memory_returns(
    server: Server,
) -> None:
    pid = server.process.pid
    baseline = rss_mib(pid)
    with PeakRss(pid) as sampler:
        # 25 sources x 16 links x 1 MB: 400 MB offered, more than the 128 links allowed.
        flood = Flood("bigline", server, sources("127.81.0", 25), 16)
        report = flood.stop()  # once every line is sent: they are held until now

    def settled() -> bool:
        return rss_mib(pid) - baseline < SETTLED_MIB

    with contextlib.suppress(AssertionError):
        wait_until(settled, timeout=30)
    shown = (
        f"RSS MiB: baseline {baseline:.0f}, peak {sampler.peak:.0f}, after {rss_mib(pid):.0f}; "
        f"attacker {report}"
    )
    print(shown)
    # Bounded while it lasts (no 1 MB per link held), and given back afterwards.
    assert sampler.peak - baseline < PEAK_MIB, shown
    assert settled(), shown
    # Each link is told its line is too long (or that there are too many links) and closed.
    assert report["opened"] == 400
    refused = dict(report["fatal"])
    too_long = refused.pop("line longer than  bytes", 0)
    too_many = refused.pop(
        "too many unauthenticated connections to this controller (limit , "
        "anonymous_links): busy, retry after  s",
        0,
    )
    assert refused == {}, shown
    assert too_long >= 128 and too_long + too_many == 400, shown
    # And the controller still serves.
    rest = Rest(server)
    try:
        elapsed, _ = rest.timed("GET", "/healthz")
        assert elapsed < 1.0
    finally:
        rest.close()
