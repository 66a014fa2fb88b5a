"""Cluster mode between two namespaced agents: ``hwfleet mdp cluster`` hands each member's
sync key and host key to the other (no key handled by hand), tells both the members and the
folder, each answers its performance score, their rsync-over-SSH loops converge the folder,
and a deletion on one member reaches the other and stays. Each member runs in its own
network namespace (veth pair) and mount namespace (its own directory bound on the common
path), with its own OpenSSH server reading the authorized_keys the agent manages."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path

import pytest
from tests.conftest import service_missing
from tests.integration.bootstrap.sshd import SSHD, keygen
from tests.integration.mdp.test_endpoint_netns import ENDPOINT, ip, readline
from tests.netns import namespace

from hwfleet.mdp.keys import KnownMachines, load_or_create_key

pytestmark = [pytest.mark.netns, pytest.mark.slow]


def member_script(ip_addr: str, own: Path, common: Path, work: Path) -> str:
    config = work / "sshd_config"
    authorized = work / "authorized_keys"
    config.write_text(
        f"ListenAddress {ip_addr}\nHostKey {work / 'host_key'}\nPidFile {work / 'sshd.pid'}\n"
        f"AuthorizedKeysFile {authorized}\nPermitRootLogin prohibit-password\n"
        "PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\n"
        "StrictModes no\n"
    )
    # sshd's privilege separation directory: made here too, not only by the bootstrap
    # tests that happen to run first in a full suite.
    os.makedirs("/run/sshd", mode=0o755, exist_ok=True)
    runner = f"{sys.executable} {ENDPOINT} {work / 'data'} 12345 {authorized} {work}/host_key.pub"
    return (
        f"mount --make-rprivate / && mount --bind {own} {common} && "
        f"{SSHD} -f {config} && exec {runner}"
    )


def files(folder: Path) -> dict[str, str]:
    return {p.name: p.read_text() for p in folder.iterdir() if p.is_file()}


def test_two_members_converge_a_folder(tmp_path: Path, deadline: float) -> None:
    if not os.path.exists(SSHD):
        service_missing("cluster sync needs openssh-server (scripts/system-packages)")
    subnet = f"10.{random.randint(100, 250)}.{random.randint(0, 255)}"
    addrs = [f"{subnet}.1", f"{subnet}.2"]
    common = tmp_path / "common"
    common.mkdir()
    known = KnownMachines(tmp_path / "ctl")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    with namespace("mdpc") as ns_a, namespace("mdpd") as ns_b:
        veth = f"mdc{os.getpid() % 10000}"
        ip("link", "add", f"{veth}a", "netns", ns_a, "type", "veth",
           "peer", "name", f"{veth}b", "netns", ns_b)  # fmt: skip
        owns, works, procs = [], [], []
        for ns, end, addr in ((ns_a, "a", addrs[0]), (ns_b, "b", addrs[1])):
            ip("-n", ns, "addr", "add", f"{addr}/24", "dev", f"{veth}{end}")
            ip("-n", ns, "link", "set", f"{veth}{end}", "up")
            ip("-n", ns, "link", "set", "lo", "up")
            work, own = tmp_path / f"member_{end}", tmp_path / f"own_{end}"
            own.mkdir()
            work.mkdir()
            keygen(work / "host_key")
            known.put(addr, load_or_create_key(work / "data"))
            owns.append(own)
            works.append(work)
        try:
            for ns, addr, own, work in zip((ns_a, ns_b), addrs, owns, works, strict=True):
                script = member_script(addr, own, common, work)
                procs.append(subprocess.Popen(
                    ["ip", "netns", "exec", ns, "unshare", "-m", "sh", "-c", script],
                    stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env,
                ))  # fmt: skip
            for proc in procs:
                assert readline(proc, deadline * 3) == "ready"

            def status(ns: str, addr: str) -> dict[str, object]:
                done = subprocess.run(
                    ["ip", "netns", "exec", ns, sys.executable, "-m", "hwfleet", "mdp", "call",
                     addr, "cluster_status", "--data-dir", str(tmp_path / "ctl"), "--json"],
                    capture_output=True, text=True, timeout=deadline * 3, env=env, check=True,
                )  # fmt: skip
                result: dict[str, object] = json.loads(done.stdout)["operations"][0]["result"]
                return result

            (owns[0] / "from_a.txt").write_text("a")
            (owns[1] / "from_b.txt").write_text("b")
            (owns[1] / "both.txt").write_text("old")
            os.utime(owns[1] / "both.txt", (time.time() - 600, time.time() - 600))
            (owns[0] / "both.txt").write_text("new")
            done = subprocess.run(
                ["ip", "netns", "exec", ns_a, sys.executable, "-m", "hwfleet", "mdp", "cluster",
                 *addrs, "--sync", str(common), "--data-dir", str(tmp_path / "ctl"), "--json"],
                capture_output=True, text=True, timeout=deadline * 6, env=env, check=False,
            )  # fmt: skip
            assert done.returncode == 0, done.stderr
            answers = json.loads(done.stdout)
            for addr in addrs:
                [mode] = answers[addr]["machine_mode"]
                assert mode["name"] == "sync_folders" and 1 <= mode["performance"] <= 9
                assert answers[addr]["sync"] == {
                    "state": "on",
                    "peers": [a for a in addrs if a != addr],
                }
            end = time.monotonic() + deadline * 6
            want = {"from_a.txt": "a", "from_b.txt": "b", "both.txt": "new"}

            def converged() -> bool:
                return all(files(own) == want for own in owns)

            while not converged():  # other processes' work: poll it, with a deadline
                assert time.monotonic() < end, [sorted(os.listdir(o)) for o in owns]
                time.sleep(0.1)
            assert list(common.iterdir()) == []  # the bind mounts stayed in their namespaces
            for work, addr in zip(works, addrs, strict=True):  # the keys the agents manage
                [line] = (work / "authorized_keys").read_text().splitlines()
                other = next(a for a in addrs if a != addr)
                assert line.startswith(f'command="/usr/bin/rrsync -ro {common}",restrict,')
                assert line.endswith(f"hwfleet-mdp-cluster:{other}") and f'from="{other}"' in line

            # A deletion on member b reaches member a, and stays deleted over later rounds.
            (owns[1] / "from_a.txt").unlink()
            del want["from_a.txt"]
            end = time.monotonic() + deadline * 6
            while not converged():
                assert time.monotonic() < end, [sorted(os.listdir(o)) for o in owns]
                time.sleep(0.1)
            pairs = list(zip((ns_a, ns_b), addrs, strict=True))
            rounds = [status(ns, addr)["sync_rounds"] for ns, addr in pairs]
            while any(
                status(ns, addr)["sync_rounds"] < r + 2
                for (ns, addr), r in zip(pairs, rounds, strict=True)
            ):
                assert time.monotonic() < end
                time.sleep(0.2)
            assert converged(), [sorted(os.listdir(o)) for o in owns]
        finally:
            for proc, work in zip(procs, works, strict=False):
                if proc.stdin:
                    proc.stdin.close()
                proc.wait(deadline)
                if proc.stdout:
                    proc.stdout.close()
                pid = work / "sshd.pid"
                if pid.exists():
                    os.kill(int(pid.read_text()), 15)
