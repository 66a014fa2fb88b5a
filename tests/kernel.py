"""What the running kernel was built with, so a test skips only for a feature it really lacks."""

from __future__ import annotations

import gzip
import os
from pathlib import Path


def kernel_option(name: str) -> bool | None:
    """Whether the kernel has ``name`` (``CONFIG_…``) built in or as a module; None if unknowable.

    Reads ``/proc/config.gz`` (CONFIG_IKCONFIG_PROC) or ``/boot/config-$(uname -r)``.
    """
    sources = [Path("/proc/config.gz"), Path(f"/boot/config-{os.uname().release}")]
    for source in sources:
        try:
            raw = source.read_bytes()
        except OSError:
            continue
        text = (gzip.decompress(raw) if source.suffix == ".gz" else raw).decode("ascii", "replace")
        return any(line in (f"{name}=y", f"{name}=m") for line in text.splitlines())
    return None
