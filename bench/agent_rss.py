"""Resident memory of one idle `hwfleet agent` process, connected to a controller.

Reference (measured on this kind of machine, not re-run here): a Salt minion
idles at 69 MB. Goal (issue 18): ≤ 25 MB, whether the agent enrolled this run or not.

Units: "MB" in this bench and the figures quoted from it has always been VmRSS's kB
divided by 1024 (MiB); the line also prints the kB /proc reports, so a reader using
another "MB" can convert: 25 MiB is 25,600 kB.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

SALT_MINION_MB = 69.0
HWFLEET = [sys.executable, "-m", "hwfleet"]
PASSWORD = "bench-only-password"  # noqa: S105 - a throwaway controller's enrollment secret


def rss_kib(pid: int) -> dict[str, int]:
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        return {
            k: int(v.split()[0])
            for k, v in (line.split(":", 1) for line in status)
            if k in ("VmRSS", "RssAnon", "RssFile")
        }


def bytecode_state() -> str:
    """Whether the agent will find hwfleet's modules compiled or compile them at start."""
    import importlib.util

    import hwfleet.agent.main

    source = hwfleet.agent.main.__file__
    if source is not None and os.path.exists(importlib.util.cache_from_source(source)):
        return "cached"
    if sys.flags.dont_write_bytecode:
        return "not cached (PYTHONDONTWRITEBYTECODE): every start compiles it"
    return "not cached yet: the first start writes it"


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="hwfleet-rss-") as data:
        log = open(os.path.join(data, "server.log"), "w")  # noqa: SIM115 - lives with the server
        server = subprocess.Popen(
            [
                *HWFLEET,
                "server",
                "--data-dir",
                data,
                "--agent-listen",
                "127.0.0.1:0",
                "--api-listen",
                "127.0.0.1:0",
                "--enroll-password",
                PASSWORD,
            ],
            stderr=log,
            stdout=subprocess.DEVNULL,
        )
        agent = None
        try:
            deadline = time.monotonic() + 60
            match = None
            while match is None and time.monotonic() < deadline:
                match = re.search(r"agents on (\S+), API (\S+)", Path(log.name).read_text())
                time.sleep(0.1)  # waiting for the server's log line, bounded
            assert match, "server did not start"
            token = Path(data, "operator.token").read_text().strip()
            request = urllib.request.Request(  # noqa: S310 - loopback only
                match.group(2) + "/api/v1/devices", headers={"Authorization": f"Bearer {token}"}
            )
            command = [
                *HWFLEET,
                "agent",
                "--controller",
                match.group(1),
                "--data-dir",
                os.path.join(data, "agent"),
                "--log-level",
                "warning",
                "--enroll-password",
                PASSWORD,
                # answer discovery on loopback only: a benchmark sends nothing off the machine
                "--discovery-interface",
                "lo",
                "--discovery-port",
                "19911",
            ]

            # First run enrolls (key generation and CSR need cryptography, in a child
            # process since issue 18); the second is an enrolled agent after a restart.
            # Both idle figures are printed: they should be the same.
            def state() -> str:
                with urllib.request.urlopen(request) as reply:  # noqa: S310 - loopback only
                    devices = json.load(reply)
                return str(devices[0]["state"]) if devices else "absent"

            def wait_state(wanted: str) -> None:
                while state() != wanted:
                    if time.monotonic() > deadline:
                        raise SystemExit(f"the agent did not become {wanted} within 60 s")
                    time.sleep(0.1)  # polling another process, bounded by the deadline

            # Then two more restarts with a bytecode cache, as a wheel install has it: without
            # one (an editable install under PYTHONDONTWRITEBYTECODE, as here) every start
            # compiles hwfleet's modules, and the compiler's peak stays in the heap. The
            # first of the two writes the cache and is not printed.
            cached_env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
            cached_env["PYTHONPYCACHEPREFIX"] = os.path.join(data, "pycache")
            runs: list[tuple[str | None, dict[str, str] | None]] = [
                ("first run (enrolled now)", None),
                ("after a restart", None),
                (None, cached_env),
                ("after a restart, bytecode cached (as a wheel install has it)", cached_env),
            ]
            print(f"hwfleet's bytecode is {bytecode_state()} for the first two runs")
            for run, env in runs:
                if agent is not None:
                    agent.terminate()
                    agent.wait(10)
                    wait_state("offline")
                deadline = time.monotonic() + 60
                agent = subprocess.Popen(
                    command, stderr=subprocess.DEVNULL, stdout=subprocess.DEVNULL, env=env
                )
                wait_state("online")
                time.sleep(3)  # let it settle into idle: this is what is being measured
                if run is None:
                    continue
                mem = rss_kib(agent.pid)
                mb = mem["VmRSS"] / 1024
                print(
                    f"idle hwfleet agent, {run}: RSS {mb:.1f} MB = MiB ({mem['VmRSS']:,} kB; anon "
                    f"{mem['RssAnon'] / 1024:.1f} MB, file {mem['RssFile'] / 1024:.1f} MB); "
                    f"goal ≤ 25 MB; Salt minion {SALT_MINION_MB:.0f} MB → "
                    f"{SALT_MINION_MB / mb:.1f}x smaller"
                )
        finally:
            for proc in (agent, server):
                if proc is not None:
                    proc.terminate()
                    proc.wait(10)


if __name__ == "__main__":
    main()
