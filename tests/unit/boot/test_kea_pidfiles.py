"""Stale Kea pid files are cleared before a spawn, live ones are kept.

Kea refuses to start while its pid file names any existing pid — a zombie included. A Kea
killed by its parent-death signal after a SIGKILLed controller stays a zombie until its new
parent reaps it, which made the next ``hwfleet server`` fail with DHCP4_ALREADY_RUNNING.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from hwfleet.boot.kea_orphan import remove_stale_pidfiles


def _zombie() -> subprocess.Popen[bytes]:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    # Wait for the exit without reaping it: waitid with WNOWAIT leaves the zombie in place.
    os.waitid(os.P_PID, child.pid, os.WEXITED | os.WNOWAIT)
    assert Path(f"/proc/{child.pid}").exists()  # still there, as a zombie
    return child


def test_a_pidfile_naming_a_zombie_is_removed(tmp_path: Path) -> None:
    config = tmp_path / "kea-dhcp4.json"
    zombie = _zombie()
    try:
        pidfile = tmp_path / "kea-dhcp4.kea-dhcp4.pid"
        pidfile.write_text(f"{zombie.pid}\n")
        assert remove_stale_pidfiles(tmp_path, config) == [pidfile]
        assert not pidfile.exists()
    finally:
        zombie.wait()


def test_a_pidfile_naming_a_live_kea_on_this_config_is_kept(tmp_path: Path) -> None:
    config = tmp_path / "kea-dhcp4.json"
    # Something whose argv reads like Kea's: a path ending in kea-dhcp4, then the config.
    code = "import sys; print('up', flush=True); sys.stdin.read()"
    live = subprocess.Popen(
        [sys.executable, "-c", code, "/usr/sbin/kea-dhcp4", "-c", str(config)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    try:
        # Popen returns once the child has let go of our memory in exec, which can be before
        # the kernel has set up its new argv (/proc/<pid>/cmdline reads empty): wait for it.
        assert live.stdout is not None and live.stdout.readline() == b"up\n"
        pidfile = tmp_path / "kea-dhcp4.kea-dhcp4.pid"
        pidfile.write_text(str(live.pid))
        garbage = tmp_path / "other.pid"
        garbage.write_text("not a pid")
        gone = tmp_path / "gone.pid"
        gone.write_text(str(2**22 + 1))  # above pid_max's default ceiling: no such process
        assert remove_stale_pidfiles(tmp_path, config) == [gone]
        assert pidfile.exists() and garbage.exists()
    finally:
        assert live.stdin is not None and live.stdout is not None
        live.stdin.close()
        live.wait()
        live.stdout.close()
