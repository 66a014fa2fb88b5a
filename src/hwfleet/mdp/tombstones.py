"""Deletions in a synced folder: tombstones with timestamps, kept in ``FOLDER/.hwfleet-sync/``.

Each member remembers which files it held after its last round (``<me>.seen.json``, never
synced). At the start of a round a file that was seen and is gone has been deleted here:
it gets a tombstone ``{path: when the round noticed}`` in ``<me>.json``, which the other
members pull with the folder. After pulling, every tombstone a member holds (its own and
the copies of the others') deletes the local file of that path whose modification time is
not newer than the tombstone — so a copy pulled back from a member that had not seen the
deletion yet goes again, while a file written after the deletion wins. Tombstones older
than ``TTL`` are forgotten; empty directories are not removed (rsync would bring them
back from a peer anyway).

Because members pull (a member's folder only changes in its own round or by its own
users), "seen" is exactly what this member held: what it scanned plus what it pulled.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from hwfleet.trust.files import write_private

STATE_DIR = ".hwfleet-sync"
#: The performance probe (hwfleet.mdp.cluster) writes here briefly; never synced.
PROBE_PREFIX = ".hwfleet-mdp-probe-"
#: Seconds a tombstone lives: a member away longer brings deleted files back.
TTL = 7 * 86400.0
MAX_TOMBSTONES = 20000


def scan(folder: Path) -> set[str]:
    """Relative paths of the files and symlinks under ``folder`` (not the state dir)."""
    found = set()
    for root, dirs, files in os.walk(folder):
        rel = os.path.relpath(root, folder)
        if rel == ".":
            dirs[:] = [d for d in dirs if d != STATE_DIR]
        # os.walk lists a symlink to a directory under dirs; it is a file for rsync -a.
        files += [d for d in dirs if os.path.islink(os.path.join(root, d))]
        for name in files:
            if rel == "." and name.startswith(PROBE_PREFIX):
                continue
            found.add(name if rel == "." else f"{rel}/{name}")
    return found


def _load(path: Path) -> dict[str, float]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}
    return {str(p): float(t) for p, t in data.items() if isinstance(t, int | float)}


def _inside(folder: Path, rel: str) -> Path | None:
    """``folder/rel`` when ``rel`` names a file under ``folder`` reached through no symlink
    and outside the state dir (tombstones arrive from other machines)."""
    parts = Path(rel).parts
    if not parts or Path(rel).is_absolute() or ".." in parts or parts[0] == STATE_DIR:
        return None
    parent = folder.joinpath(*parts[:-1])
    if os.path.realpath(parent) != os.path.join(os.path.realpath(folder), *parts[:-1]):
        return None
    return parent / parts[-1]


class Tombstones:
    """One member's deletion bookkeeping for one folder."""

    def __init__(self, folder: Path, me: str) -> None:
        self.folder = folder
        self.dir = folder / STATE_DIR
        self.own = self.dir / f"{me}.json"
        self.seen_file = self.dir / f"{me}.seen.json"

    def before(self, now: float) -> set[str]:
        """Scan; tombstone what was seen and is gone. Returns the scan."""
        current = scan(self.folder)
        self.dir.mkdir(exist_ok=True)
        own = {p: t for p, t in _load(self.own).items() if now - t < TTL}
        if self.seen_file.exists():
            seen = set(json.loads(self.seen_file.read_text()))
            for path in seen - current:
                own[path] = now
        if len(own) > MAX_TOMBSTONES:
            own = dict(sorted(own.items(), key=lambda item: item[1])[-MAX_TOMBSTONES:])
        write_private(self.own, json.dumps(own, sort_keys=True).encode())
        os.chmod(self.own, 0o644)
        return current

    def after(self, scanned: set[str], pulled: set[str], now: float) -> list[str]:
        """Apply every tombstone held here; remember what this member now holds."""
        tombs: dict[str, float] = {}
        for path in self.dir.glob("*.json"):
            if path.name.endswith(".seen.json"):
                continue
            for rel, when in _load(path).items():
                if now - when < TTL and when > tombs.get(rel, 0.0):
                    tombs[rel] = when
        deleted = []
        for rel, when in sorted(tombs.items()):
            target = _inside(self.folder, rel)
            if target is None:
                continue
            try:
                if target.lstat().st_mtime <= when:
                    target.unlink()
                    deleted.append(rel)
            except (FileNotFoundError, IsADirectoryError, PermissionError):
                continue
        held = (scanned | pulled) - set(deleted)
        write_private(self.seen_file, json.dumps(sorted(held)).encode())
        return deleted
