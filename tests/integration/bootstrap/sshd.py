"""A throwaway OpenSSH server (Debian's openssh-server) on a loopback port, its own host key,
config and authorized key: the bootstrap target."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.conftest import service_missing

SSHD = "/usr/sbin/sshd"


@dataclass
class Sshd:
    port: int
    client_key: Path
    host_key: Path


def keygen(path: Path) -> None:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)],
                   check=True, timeout=30)  # fmt: skip


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def sshd(
    workdir: Path,
    deadline: float,
    *,
    address: str = "127.0.0.1",
    port: int | None = None,
    authorized: str = ".ssh/authorized_keys",
    mount: tuple[Path, Path] | None = None,
) -> Iterator[Sshd]:
    """``authorized``: root's other authorized_keys file; ``mount=(own, common)``: run sshd
    (and so everything a session starts) in its own mount namespace with ``own`` bound on
    ``common``, so two targets on one machine each have their own ``--root``."""
    if not os.path.exists(SSHD) or shutil.which("ssh-keygen") is None or os.geteuid() != 0:
        service_missing("bootstrap tests need root and openssh-server (scripts/system-packages)")
    workdir.mkdir(parents=True, exist_ok=True)
    host_key, client_key = workdir / "host_key", workdir / "client_key"
    keygen(host_key)
    keygen(client_key)
    (workdir / "authorized_keys").write_text((workdir / "client_key.pub").read_text())
    port = port or free_port()
    config = workdir / "sshd_config"
    config.write_text(
        f"Port {port}\nListenAddress {address}\nHostKey {host_key}\n"
        f"PidFile {workdir / 'sshd.pid'}\n"
        # root: the test's file; other users (tests/integration/bootstrap/users.py): their own.
        f"AuthorizedKeysFile {workdir / 'authorized_keys'} {authorized}\n"
        "PermitRootLogin prohibit-password\nPasswordAuthentication no\n"
        "KbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\n"
        "Subsystem sftp internal-sftp\n"
    )
    os.makedirs("/run/sshd", mode=0o755, exist_ok=True)  # privilege separation directory
    argv = [SSHD, "-D", "-e", "-f", str(config)]
    if mount is not None:
        own, common = mount
        script = f"mount --make-rprivate / && mount --bind {own} {common} && exec {' '.join(argv)}"
        argv = ["unshare", "-m", "sh", "-c", script]
    with subprocess.Popen(argv, stderr=subprocess.DEVNULL) as proc:
        try:
            end = time.monotonic() + deadline
            while True:  # a process we do not control: wait for its port, with a deadline
                try:
                    socket.create_connection((address, port), timeout=1).close()
                    break
                except OSError:
                    if time.monotonic() > end or proc.poll() is not None:
                        raise AssertionError("sshd did not start") from None
                    time.sleep(0.05)
            yield Sshd(port, client_key, host_key)
        finally:
            proc.terminate()
            proc.wait(10)
