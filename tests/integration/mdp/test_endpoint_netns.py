"""The diagnostics endpoint across a veth pair between two network namespaces this test
creates: the agent in one, the outside-style client in the other (DESIGN §13)."""

from __future__ import annotations

import json
import os
import random
import selectors
import subprocess
import sys
from pathlib import Path

import pytest
from tests.netns import namespace

from hwfleet.mdp.keys import KnownMachines, load_or_create_key

pytestmark = pytest.mark.netns

HERE = Path(__file__).parent
ENDPOINT = str(HERE / "netns_endpoint.py")
OUTSIDE = str(HERE / "outside_client.py")


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=10)


def readline(proc: subprocess.Popen[str], deadline: float) -> str:
    assert proc.stdout is not None
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        if not sel.select(deadline):
            raise AssertionError("the endpoint did not start in time")
    return proc.stdout.readline().strip()


def test_outside_client_across_namespaces(tmp_path: Path, deadline: float) -> None:
    subnet = f"10.{random.randint(100, 250)}.{random.randint(0, 255)}"
    with namespace("mdpa") as agent_ns, namespace("mdpb") as client_ns:
        veth = f"mdp{os.getpid() % 10000}"
        ip("link", "add", f"{veth}a", "netns", agent_ns, "type", "veth",
           "peer", "name", f"{veth}b", "netns", client_ns)  # fmt: skip
        for ns, end, host in ((agent_ns, "a", 1), (client_ns, "b", 2)):
            ip("-n", ns, "addr", "add", f"{subnet}.{host}/24", "dev", f"{veth}{end}")
            ip("-n", ns, "link", "set", f"{veth}{end}", "up")
            ip("-n", ns, "link", "set", "lo", "up")
        agent_dir = tmp_path / "agent"
        key = load_or_create_key(agent_dir)
        # The controller's copy, as bootstrap (over SSH) or mdp.key (over mTLS) would record it.
        KnownMachines(tmp_path / "ctl").put(f"{subnet}.1", key)
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
        with subprocess.Popen(
            ["ip", "netns", "exec", agent_ns, sys.executable, ENDPOINT, str(agent_dir), "12345"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        ) as proc:
            try:
                assert readline(proc, deadline * 3) == "ready"
                done = subprocess.run(
                    ["ip", "netns", "exec", client_ns, sys.executable, OUTSIDE, f"{subnet}.1",
                     "12345", str(tmp_path / "ctl" / ".known_machines")],
                    capture_output=True, text=True, timeout=deadline * 3, env=env, check=False,
                )  # fmt: skip
                assert done.returncode == 0, done.stderr
                found = json.loads(done.stdout)
            finally:
                assert proc.stdin is not None
                proc.stdin.close()
                tail = readline(proc, deadline)
                proc.wait(deadline)
    assert found["good_status"] and found["good_authentic"] and not found["reply_has_key"]
    for attack in ("wrong_key", "replay", "stale", "malformed", "oversized", "legacy"):
        assert found[f"{attack}_silent"], attack
    counters = json.loads(tail)
    for reason in ("bad_key", "replay", "stale", "malformed", "oversized", "legacy_refused"):
        assert counters[reason] == 1, reason
    assert counters["answered"] == 7  # the good request and six probes
