"""Load, memory, services, logs and the network as this machine sees them.

A simulated device (``hwfleet sim``) answers from the host it runs on for these: they
describe the operating system, which the simulated devices share.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import time
from collections import deque
from pathlib import Path
from typing import Any

from hwfleet.mdp.operations import OperationContext, OperationError

#: Files ``log_tail`` may read: below this directory only (resolved, so no ``..`` escape).
LOG_ROOT = Path("/var/log")
MAX_LINES = 200
_SERVICE = re.compile(r"^[A-Za-z0-9@._:-]{1,128}$")


def load_and_memory(ctx: OperationContext) -> dict[str, Any]:
    """Load averages (1, 5, 15 min), CPU count, and memory/swap totals and availability in MiB."""
    one, five, fifteen = os.getloadavg()
    mem: dict[str, int] = {}
    with open("/proc/meminfo", encoding="ascii") as handle:
        for line in handle:
            name, _, rest = line.partition(":")
            mem[name] = int(rest.split()[0]) // 1024
    return {
        "load": [round(one, 2), round(five, 2), round(fifteen, 2)],
        "cpus": os.cpu_count() or 1,
        "mem_total_mb": mem.get("MemTotal", 0),
        "mem_available_mb": mem.get("MemAvailable", 0),
        "swap_total_mb": mem.get("SwapTotal", 0),
        "swap_free_mb": mem.get("SwapFree", 0),
        "uptime_s": round(time.clock_gettime(time.CLOCK_BOOTTIME)),
    }


def service_status(ctx: OperationContext, name: str) -> dict[str, Any]:
    """State of service NAME: systemd's ActiveState/SubState, or the sysvinit script's exit code."""
    if not _SERVICE.match(name):
        raise OperationError("name must be a service name (letters, digits, @._:-)")
    import shutil  # here, not at the top: see _journalctl

    if shutil.which("systemctl") and Path("/run/systemd/system").is_dir():
        done = subprocess.run(
            ["systemctl", "show", name, "--property=LoadState,ActiveState,SubState"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
        props = dict(line.split("=", 1) for line in done.stdout.splitlines() if "=" in line)
        return {
            "name": name,
            "init": "systemd",
            "loaded": props.get("LoadState", ""),
            "active": props.get("ActiveState", ""),
            "sub": props.get("SubState", ""),
        }
    script = Path("/etc/init.d") / name
    if not script.is_file():
        return {"name": name, "init": "sysvinit", "loaded": "not-found", "active": "unknown"}
    code = subprocess.run(
        [str(script), "status"], capture_output=True, timeout=10, check=False
    ).returncode
    # LSB: 0 running, 3 not running, anything else unknown.
    state = {0: "active", 3: "inactive"}.get(code, "unknown")
    return {"name": name, "init": "sysvinit", "loaded": "loaded", "active": state}


def log_tail(ctx: OperationContext, path: str = "syslog", lines: int = 20) -> dict[str, Any]:
    """The last LINES (default 20, at most 200) lines of a log file under /var/log (PATH is relative
    to it), or of the systemd journal with PATH "journal" — also what the default "syslog" reads
    on a machine that has no /var/log/syslog (Debian 12 without rsyslog). A reply that would
    not fit a datagram is refused: ask for fewer lines."""
    if not isinstance(lines, int) or not 1 <= lines <= MAX_LINES:
        raise OperationError(f"lines must be an integer from 1 to {MAX_LINES}")
    root = LOG_ROOT.resolve()
    target = (root / path).resolve()
    if path == "journal" or (path == "syslog" and not target.exists() and _journalctl()):
        return _journal_tail(lines)
    if not target.is_relative_to(root):
        raise OperationError("path must be a file under /var/log")
    if not target.is_file():
        raise OperationError(f"no log file /var/log/{path}")
    with open(target, encoding="utf-8", errors="replace") as handle:
        tail = deque(handle, maxlen=lines)
    return {"path": str(target), "lines": [line.rstrip("\n") for line in tail]}


def _journalctl() -> str | None:
    # Imported on use: shutil brings bz2, lzma and zlib, which an idle agent need not carry.
    import shutil

    return shutil.which("journalctl")


def _journal_tail(lines: int) -> dict[str, Any]:
    import subprocess

    exe = _journalctl()
    if exe is None:
        raise OperationError("no systemd journal on this machine (journalctl is missing)")
    try:
        done = subprocess.run([exe, "-n", str(lines), "--no-pager", "-q", "-o", "short-iso"],
                              capture_output=True, text=True, timeout=10, check=False)  # fmt: skip
    except subprocess.TimeoutExpired:
        raise OperationError("journalctl did not answer within 10 s") from None
    if done.returncode != 0:
        raise OperationError(f"journalctl failed: {done.stderr.strip()[-200:]}")
    return {"path": "journal", "lines": done.stdout.splitlines()[-lines:]}


def network_check(
    ctx: OperationContext, host: str, port: int = 0, timeout: float = 3.0
) -> dict[str, Any]:
    """Resolve HOST and, with PORT, time a TCP connection to it (TIMEOUT seconds, at most 10)."""
    if not isinstance(host, str) or not 0 < len(host) <= 253:
        raise OperationError("host must be a host name or address")
    if not isinstance(port, int) or not 0 <= port <= 65535:
        raise OperationError("port must be 0..65535")
    timeout = min(max(float(timeout), 0.1), 10.0)
    out: dict[str, Any] = {"host": host}
    try:
        infos = socket.getaddrinfo(host, port or None, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        return {**out, "resolved": [], "error": f"does not resolve: {exc.strerror}"}
    out["resolved"] = sorted({str(info[4][0]) for info in infos})
    if port:
        started = time.monotonic()
        try:
            with socket.create_connection((host, port), timeout=timeout):
                out["connect_ms"] = round((time.monotonic() - started) * 1000, 2)
                out["reachable"] = True
        except OSError as exc:
            out["reachable"] = False
            out["error"] = exc.strerror or type(exc).__name__
    return out
