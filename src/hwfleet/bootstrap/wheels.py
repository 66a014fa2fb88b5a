"""The wheelhouse a target installs from without internet: hwfleet's wheel and its deps.

Built once per hwfleet version with ``pip wheel`` from this installation's source tree into
``<data-dir>/wheelhouse/<version>`` (or given ready-made with ``--wheelhouse``).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from hwfleet import __version__


class WheelhouseError(Exception):
    """No wheelhouse could be found or built; the message says how to provide one."""


def source_tree() -> Path | None:
    root = Path(__file__).resolve().parents[3]
    return root if (root / "pyproject.toml").is_file() else None


def wheelhouse(data_dir: str, given: str | None = None) -> Path:
    if given:
        path = Path(given)
        if not any(path.glob("hwfleet-*.whl")):
            raise WheelhouseError(f"--wheelhouse {given} holds no hwfleet-*.whl")
        return path
    path = Path(data_dir) / "wheelhouse" / __version__
    if any(path.glob("hwfleet-*.whl")):
        return path
    tree = source_tree()
    if tree is None:
        raise WheelhouseError(
            "hwfleet is not installed from a source tree: build the wheels elsewhere "
            "(pip wheel -w DIR hwfleet) and pass --wheelhouse DIR"
        )
    path.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "wheel", "-q", "-w", str(path)]
    if (tree / "constraints.txt").is_file():
        cmd += ["-c", str(tree / "constraints.txt")]
    done = subprocess.run(
        [*cmd, str(tree)], capture_output=True, text=True, timeout=900, check=False
    )
    if done.returncode != 0:
        raise WheelhouseError(f"pip wheel failed: {done.stderr.strip()[-400:]}")
    return path


def wheel_files(path: Path) -> dict[str, int]:
    return {p.name: p.stat().st_size for p in sorted(path.glob("*.whl"))}
