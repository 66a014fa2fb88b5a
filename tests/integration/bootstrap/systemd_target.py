"""A Debian machine running a real systemd as PID 1, reachable over SSH on a loopback port.

``systemd-nspawn --boot`` (Debian's systemd-container) boots the cached root filesystem
(tests/integration/bootstrap/debian_root.py) on a throwaway overlay (``--volatile=overlay``:
nothing a test does reaches the cache). The container shares this machine's network
namespace, so its sshd is configured (a drop-in bound in read-only) to listen on
127.0.0.1 only, on a port the OS gave, and its agent is told to listen on loopback too:
nothing is reachable beyond loopback. Root logs in with the test's key only.
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.conftest import service_missing
from tests.integration.bootstrap.sshd import free_port, keygen

NSPAWN = "systemd-nspawn"
#: Power-on to sshd answering (seconds a container takes, bounded generously for load).
BOOT_DEADLINE = 180.0


@dataclass
class Machine:
    port: int
    client_key: Path
    name: str
    console: Path
    boot_seconds: float


def _tail(path: Path) -> str:
    return path.read_text(errors="replace")[-3000:] if path.exists() else ""


@contextmanager
def booted(root: Path, workdir: Path) -> Iterator[Machine]:
    if shutil.which(NSPAWN) is None:
        service_missing("the systemd target needs systemd-nspawn (systemd-container)")
    workdir.mkdir(parents=True, exist_ok=True)
    keygen(workdir / "client_key")
    ssh_dir = workdir / "root_ssh"
    ssh_dir.mkdir(mode=0o700)
    shutil.copy(workdir / "client_key.pub", ssh_dir / "authorized_keys")
    port = free_port()
    dropin = workdir / "sshd.conf"
    dropin.write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nPermitRootLogin prohibit-password\n"
        "PasswordAuthentication no\nKbdInteractiveAuthentication no\n"
    )
    name = f"hwfleet-{secrets.token_hex(3)}"
    console = workdir / "console.log"
    argv = [
        NSPAWN, "--quiet", "--boot", "--directory", str(root), "--volatile=overlay",
        # No machined or host systemd here: keep the cgroup this process has.
        "--register=no", "--keep-unit", "--console=passive", "--machine", name,
        f"--bind-ro={dropin}:/etc/ssh/sshd_config.d/hwfleet-test.conf",
        f"--bind-ro={ssh_dir}:/root/.ssh",
    ]  # fmt: skip
    started = time.monotonic()
    with console.open("wb") as log:
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
    try:
        while True:  # another machine booting: wait for its sshd's port, with a deadline
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1) as probe:
                    probe.settimeout(5)
                    if probe.recv(64).startswith(b"SSH-"):
                        break
            except OSError:
                pass
            if proc.poll() is not None:
                raise AssertionError(f"{NSPAWN} ended ({proc.returncode}): {_tail(console)}")
            if time.monotonic() - started > BOOT_DEADLINE:
                raise AssertionError(f"no sshd after {BOOT_DEADLINE:g} s: {_tail(console)}")
            time.sleep(0.2)
        yield Machine(port, workdir / "client_key", name, console, time.monotonic() - started)
    finally:
        proc.terminate()  # nspawn asks the container's systemd for an orderly poweroff
        try:
            proc.wait(90)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(30)


def ssh(machine: Machine, known_hosts: Path, command: str, timeout: float = 60) -> str:
    """``command`` as root on the machine, its host key checked against ``known_hosts``."""
    argv = ["ssh", "-p", str(machine.port), "-i", str(machine.client_key),
            "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes",
            "-o", "StrictHostKeyChecking=yes", "-o", f"UserKnownHostsFile={known_hosts}",
            "root@127.0.0.1", command]  # fmt: skip
    done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=_env())
    if done.returncode != 0:
        raise AssertionError(f"`{command}` exited {done.returncode}: {done.stderr[-500:]}")
    return done.stdout


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k != "SSH_AUTH_SOCK"}
