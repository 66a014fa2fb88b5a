"""``build-discovery``: the Debian kernel and an initramfs whose tree runs the hwfleet agent.

The built tree is checked by running its own python (chroot) on the agent: every import
and entry point the agent needs must be inside. Downloads the kernel package with apt
(about 70 MB), so it takes a minute or two.
"""

from __future__ import annotations

import gzip
import os
import shutil
import subprocess
from pathlib import Path

from tests.conftest import service_missing

from hwfleet.boot.discovery_image import build_discovery


def test_build_discovery_runs_the_agent(tmp_path: Path) -> None:
    for tool in ("apt-get", "dpkg-deb", "cpio", "busybox", "python3.11"):
        if shutil.which(tool) is None:
            service_missing(f"{tool} is needed to build the discovery environment")
    if os.geteuid() != 0:
        service_missing("chroot into the built tree needs root")
    tree = tmp_path / "root"
    doc = build_discovery(tmp_path / "out", keep_tree=tree)
    kernel = Path(str(doc["vmlinuz"])).read_bytes()
    assert kernel[0x202:0x206] == b"HdrS"  # a bzImage a boot loader (iPXE) can load
    with gzip.open(str(doc["initrd"])) as f:
        assert f.read(6) == b"070701"  # newc cpio
    init = (tree / "init").read_text()
    assert "hwfleet agent" in init and "hwfleet.token" in init
    assert any((tree / "lib/modules").rglob("e1000.ko"))
    chroot = shutil.which("chroot") or "/usr/sbin/chroot"
    env = {"PATH": "/bin:/usr/bin", "PYTHONPATH": "/opt/hwfleet/site"}
    check = (
        "import importlib.metadata as md, ssl, sqlite3, hwfleet.agent.main;"
        "print(sorted(e.name for e in md.entry_points(group='hwfleet.hardware_managers')))"
    )
    done = subprocess.run(
        [chroot, str(tree), "/usr/bin/python3.11", "-c", check],
        capture_output=True, text=True, timeout=120, env=env,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() not in ("", "[]")
    done = subprocess.run(
        [chroot, str(tree), "/usr/bin/python3.11", "-m", "hwfleet", "agent", "--help"],
        capture_output=True, text=True, timeout=120, env=env,
    )  # fmt: skip
    assert done.returncode == 0 and "--enroll-token" in done.stdout, done.stderr
