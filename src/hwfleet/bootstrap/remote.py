"""Running commands on the target over an asyncssh connection, and what the target is."""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from typing import Any


class RemoteError(Exception):
    """A command failed on the target; the message has its exit code and stderr."""


async def run(conn: Any, argv: list[str], *, check: bool = True, timeout: float = 300) -> str:
    command = " ".join(shlex.quote(a) for a in argv)
    result = await conn.run(command, check=False, timeout=timeout)
    if check and result.exit_status != 0:
        err = str(result.stderr or "").strip()[-400:]
        raise RemoteError(f"`{argv[0]} …` exited {result.exit_status}: {err}")
    return str(result.stdout or "")


@dataclass(frozen=True, slots=True)
class Target:
    distro: str
    version: str
    init: str  # "systemd" or "sysvinit"
    python: str  # path
    python_version: tuple[int, int, int]


PROBE = r"""
. /etc/os-release 2>/dev/null; echo "distro=${ID:-unknown}"; echo "version=${VERSION_ID:-}"
if [ -d /run/systemd/system ] && command -v systemctl >/dev/null; then echo init=systemd;
else echo init=sysvinit; fi
for p in /usr/bin/python3 python3.13 python3.12 python3.11 python3; do
  v=$($p -c 'import sys; print("%d.%d.%d" % sys.version_info[:3])' 2>/dev/null) || continue
  case "$v" in 3.1[1-9].*) echo "python=$(command -v $p)"; echo "pyver=$v"; break;; esac
done
"""


async def detect(conn: Any) -> Target:
    out = await run(conn, ["sh", "-c", PROBE])
    facts = dict(line.split("=", 1) for line in out.splitlines() if "=" in line)
    if "python" not in facts:
        raise RemoteError("no Python 3.11+ on the target (hwfleet's agent needs it)")
    major, minor, micro = (int(x) for x in facts.get("pyver", "0.0.0").split("."))
    return Target(
        distro=facts.get("distro", "unknown"),
        version=facts.get("version", ""),
        init=facts.get("init", "sysvinit"),
        python=facts["python"],
        python_version=(major, minor, micro),
    )
