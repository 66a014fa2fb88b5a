"""A Debian root filesystem with systemd, OpenSSH and python3-venv, built once and cached.

``debootstrap`` (Debian's package) builds it from the mirror this machine's apt already uses
(read from its sources, never named here), the same release as the host, into
``$HWFLEET_TEST_CACHE`` (default ``~/.cache/hwfleet-tests``, shared with the imaging VM
build) under a name that holds a digest of the recipe: a later run, or CI on the same
machine, reuses it in no time; a changed recipe builds a new one. The build goes to
``NAME.partial`` and is renamed when complete, so an interrupted build is never taken for
a finished one.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
from pathlib import Path

from tests.conftest import service_missing

PACKAGES = ("systemd", "systemd-sysv", "dbus", "openssh-server", "python3-venv", "procps")
#: debootstrap on a loaded 2-core machine: a few minutes; bounded.
BUILD_TIMEOUT = 1500


def cache_dir() -> Path:
    given = os.environ.get("HWFLEET_TEST_CACHE")
    return Path(given) if given else Path.home() / ".cache" / "hwfleet-tests"


def host_release() -> str:
    text = Path("/etc/os-release").read_text()
    found = re.search(r"^VERSION_CODENAME=(\S+)$", text, re.M)
    if not found:
        service_missing("the host's /etc/os-release names no Debian release")
    return found.group(1).strip('"')


def mirror(release: str) -> str:
    """The URI the host's apt fetches ``release`` from (deb822 or one-line sources)."""
    sources = Path("/etc/apt/sources.list.d")
    for path in sorted(sources.glob("*.sources")) if sources.is_dir() else []:
        for stanza in path.read_text().split("\n\n"):
            fields = dict(
                line.split(":", 1) for line in stanza.splitlines() if ":" in line and line[0] != "#"
            )
            suites = fields.get("Suites", "").split()
            if release in suites and "deb" in fields.get("Types", "").split():
                return fields["URIs"].split()[0]
    legacy = Path("/etc/apt/sources.list")
    if legacy.is_file():
        for line in legacy.read_text().splitlines():
            parts = line.split()
            if len(parts) >= 3 and parts[0] == "deb" and parts[-2] == release:
                return parts[-3] if not parts[1].startswith("[") else parts[2]
    service_missing(f"no apt source for {release} on this machine to debootstrap from")
    raise AssertionError  # service_missing does not return


def debian_root() -> Path:
    """The cached root filesystem, built first when missing (root and debootstrap needed)."""
    if os.geteuid() != 0 or shutil.which("debootstrap") is None:
        service_missing("the systemd target needs root and debootstrap (scripts/system-packages)")
    release = host_release()
    recipe = f"{release} minbase {','.join(PACKAGES)} v1"
    name = f"debian-{release}-{hashlib.sha256(recipe.encode()).hexdigest()[:12]}"
    root = cache_dir() / name
    if (root / "usr/lib/systemd/systemd").exists() or (root / "lib/systemd/systemd").exists():
        return root
    partial = cache_dir() / f"{name}.partial"
    shutil.rmtree(partial, ignore_errors=True)
    partial.parent.mkdir(parents=True, exist_ok=True)
    argv = ["debootstrap", "--variant=minbase", f"--include={','.join(PACKAGES)}",
            release, str(partial), mirror(release)]  # fmt: skip
    done = subprocess.run(argv, capture_output=True, text=True, timeout=BUILD_TIMEOUT)
    if done.returncode != 0:
        log = partial / "debootstrap/debootstrap.log"
        tail = log.read_text(errors="replace")[-2000:] if log.exists() else done.stderr[-2000:]
        raise AssertionError(f"debootstrap failed ({done.returncode}): {tail}")
    # The cached tree is a template: every boot runs on a throwaway overlay of it.
    (partial / "etc/hostname").write_text("hwfleet-target\n")
    partial.rename(root)
    return root
