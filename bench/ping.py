"""Ping-all round trip with 100 and 1,000 simulated agents over loopback.

The controller runs in this process; the simulated fleet runs in another
(`hwfleet sim`), so the two sides use both cores as a real deployment would.
Prints the median and best of several ping-all rounds, measured at the
controller (ping_many) and through the REST API (what `hwfleet ping --all` does).
The controller tenures what survives a full collection, as ``hwfleet server`` does.

Reference (measured on this kind of machine, not re-run here): Salt 3008 took
a median 13 s to `test.ping` 100 minions. Goals: 100 agents ≤ 0.2 s, 1,000 ≤ 1 s.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time

import httpx

from hwfleet.cli.common import run
from hwfleet.controller.app import Controller
from hwfleet.controller.heap import start_tenuring
from hwfleet.settings import ServerSettings

SALT_100_MEDIAN_S = 13.0
#: The simulated devices enroll over TLS like real ones, then ping over mutual TLS.
PASSWORD = secrets.token_urlsafe(16)


async def bench(counts: list[int], rounds: int) -> None:
    # As `hwfleet server` does: survivors of full collections are tenured, so a ping-all of
    # thousands does not wait on 0.6 s collections of every link (docs/scale.md).
    start_tenuring()
    for count in counts:
        with tempfile.TemporaryDirectory(prefix="hwfleet-bench-") as data_dir:
            settings = ServerSettings(
                data_dir=data_dir,
                agent_listen="127.0.0.1:0",
                api_listen="127.0.0.1:0",
                bus="memory://",
                call_timeout=30.0,
                offline_after=600.0,
                enroll_password=PASSWORD,
            )
            ctl = Controller(settings)
            await ctl.start()
            host, port = ctl.gateway.address
            sim = subprocess.Popen(  # noqa: ASYNC220 - a long-lived child, waited for below
                [
                    sys.executable,
                    "-m",
                    "hwfleet.cli",
                    "sim",
                    "--controller",
                    f"{host}:{port}",
                    "--devices",
                    str(count),
                    "--enroll-password",
                    PASSWORD,
                    "--controller-fingerprint",
                    ctl.admission.ca.fingerprint(),
                    "--data-dir",
                    os.path.join(data_dir, "sim"),
                    "--no-discovery",
                    "--log-level",
                    "error",
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            try:
                start = time.perf_counter()
                while len(ctl.devices.online()) < count:
                    if time.perf_counter() - start > 120:
                        raise SystemExit(f"only {len(ctl.devices.online())}/{count} connected")
                    await asyncio.sleep(0.05)  # waiting on another process; bounded above
                connect_s = time.perf_counter() - start
                direct = []
                for _ in range(rounds):
                    t0 = time.perf_counter()
                    result = await ctl.devices.ping_many(ctl.devices.online(), timeout=30)
                    direct.append(time.perf_counter() - t0)
                    assert all(r["ok"] for r in result.values())
                via_api = []
                headers = {"Authorization": f"Bearer {ctl.operator_token}"}
                async with httpx.AsyncClient(
                    base_url=ctl.api_url, headers=headers, timeout=60
                ) as client:
                    for _ in range(rounds):
                        t0 = time.perf_counter()
                        reply = await client.post("/api/v1/devices/ping", json={"all": True})
                        via_api.append(time.perf_counter() - t0)
                        assert reply.status_code == 200 and len(reply.json()) == count
                med = statistics.median(direct)
                print(
                    f"{count:>5} agents: connected in {connect_s:.2f} s; ping-all median "
                    f"{med * 1000:.1f} ms (best {min(direct) * 1000:.1f} ms) at the controller, "
                    f"{statistics.median(via_api) * 1000:.1f} ms through the REST API"
                )
                if count == 100:
                    print(
                        f"        vs Salt 3008 test.ping of 100 minions (13 s median, measured "
                        f"earlier on this machine kind): {SALT_100_MEDIAN_S / med:.0f}x faster"
                    )
            finally:
                sim.terminate()
                # Wait off the loop: the fleet's TLS goodbyes need this controller to answer.
                await asyncio.to_thread(sim.wait, 30)
                await ctl.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, nargs="*", default=[100, 1000])
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    os.environ.setdefault("PYTHONWARNINGS", "ignore")
    run(bench(args.devices, args.rounds))


if __name__ == "__main__":
    main()
