"""A throwaway non-root account for the bootstrap target: made with useradd, logs in with
the test's client key, optionally with passwordless sudo; removed afterwards."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.conftest import service_missing


@contextmanager
def login_user(pubkey: Path) -> Iterator[tuple[str, Path]]:
    """``(name, sudoers file)``: write the file to grant passwordless sudo."""
    if shutil.which("sudo") is None or shutil.which("useradd") is None:
        service_missing("bootstrap as a sudo user needs sudo (scripts/system-packages)")
    name = f"hwbt{os.getpid() % 100000}"
    sudoers = Path("/etc/sudoers.d") / name
    # "*": no password, yet not locked ("!"), which sshd without PAM would refuse.
    subprocess.run(["useradd", "-m", "-s", "/bin/sh", "-p", "*", name], check=True, timeout=60)
    try:
        ssh = Path(f"/home/{name}/.ssh")
        ssh.mkdir(mode=0o700)
        (ssh / "authorized_keys").write_text(pubkey.read_text())
        shutil.chown(ssh, name, name)
        shutil.chown(ssh / "authorized_keys", name, name)
        yield name, sudoers
    finally:
        sudoers.unlink(missing_ok=True)
        subprocess.run(["userdel", "-r", "-f", name], check=False, timeout=60,
                       capture_output=True)  # fmt: skip


def grant_sudo(name: str, sudoers: Path) -> None:
    fd = os.open(sudoers, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o440)
    with os.fdopen(fd, "w") as handle:
        handle.write(f"{name} ALL=(ALL) NOPASSWD: ALL\n")
