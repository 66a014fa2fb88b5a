"""Processes a test started: stopped the same way everywhere."""

from __future__ import annotations

import subprocess
from typing import Any


def stop(process: subprocess.Popen[Any] | None, grace: float = 15.0) -> None:
    """Terminate ``process`` if it still runs; SIGKILL if it does not stop within ``grace``."""
    if process is None or process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(grace)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(grace)
