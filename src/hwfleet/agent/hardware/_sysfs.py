"""Cheap sysfs/procfs reads: one open and one read per attribute, never a subprocess.

Readers work on ``str`` paths joined under a ``root`` so that tests can point
them at a fake tree and the agent at ``/``. A file that is missing or
unreadable (permission, ``EINVAL`` from a link that is down) reads as ``None``:
an inventory reports what it can rather than failing on one attribute.
"""

from __future__ import annotations

import os
from pathlib import Path


def under(root: Path | str, *parts: str) -> str:
    """``root`` joined with an absolute-looking path such as ``"/sys/block"``."""
    return os.path.join(os.fspath(root), *(part.lstrip("/") for part in parts))


def read_bytes(path: str) -> bytes | None:
    try:
        with open(path, "rb", buffering=0) as handle:
            return handle.read()
    except OSError:
        return None


def read_str(path: str) -> str | None:
    """The file's text, stripped; ``None`` if missing, unreadable or empty."""
    data = read_bytes(path)
    if data is None:
        return None
    text = data.decode("utf-8", "replace").strip().strip("\x00").strip()
    return text or None


def read_int(path: str, base: int = 10) -> int | None:
    text = read_str(path)
    if text is None:
        return None
    try:
        return int(text, base)
    except ValueError:
        return None


def read_flag(path: str) -> bool | None:
    """``"1"``/``"0"`` files (rotational, removable, ro, carrier)."""
    value = read_int(path)
    return None if value is None else value != 0


def link_name(path: str) -> str | None:
    """The last component of a symlink's target (``driver`` links name the driver)."""
    try:
        return os.path.basename(os.readlink(path))
    except OSError:
        return None


def list_dir(path: str) -> list[str]:
    try:
        return sorted(os.listdir(path))
    except OSError:
        return []
