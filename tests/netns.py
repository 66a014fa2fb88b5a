"""Network namespaces for tests: create one (root and iproute2, else ``service_missing``) and
run a Python script inside it with ``ip netns exec``, which also mounts that namespace's sysfs."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from tests.conftest import service_missing


@contextmanager
def namespace(prefix: str) -> Iterator[str]:
    """A fresh namespace named ``<prefix><random>``, deleted afterwards."""
    if os.geteuid() != 0 or shutil.which("ip") is None:
        service_missing("network-namespace tests need root and iproute2")
    name = f"{prefix}{secrets.token_hex(4)}"
    subprocess.run(["ip", "netns", "add", name], check=True, capture_output=True, timeout=10)
    try:
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False, capture_output=True, timeout=10)


def run_json(ns: str | None, script: str, *args: str) -> dict[str, Any]:
    """Run ``script`` with this interpreter (inside ``ns`` unless None); its stdout is one JSON."""
    prefix = ["ip", "netns", "exec", ns] if ns else []
    done = subprocess.run(
        [*prefix, sys.executable, script, *args],
        check=True,
        capture_output=True,
        timeout=60,
        text=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    result: dict[str, Any] = json.loads(done.stdout)
    return result
