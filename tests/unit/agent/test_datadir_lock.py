"""One agent per data directory: a second holder is refused with the first one's pid, and the
directory is free again once the first lets go."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from hwfleet.agent.datadir_lock import LOCK_FILE, DataDirInUseError, data_dir_lock


def test_a_second_agent_on_the_same_data_dir_is_refused(tmp_path: Path) -> None:
    with data_dir_lock(tmp_path):
        assert (tmp_path / LOCK_FILE).read_text() == f"{os.getpid()}\n"
        # flock belongs to the open file: a second open conflicts even in this process.
        refused = rf"another hwfleet agent \(pid {os.getpid()}\)"
        with pytest.raises(DataDirInUseError, match=refused), data_dir_lock(tmp_path):
            pass
        with data_dir_lock(tmp_path / "other"):  # another device's directory is its own
            pass
    with data_dir_lock(tmp_path):  # released: the next agent starts
        pass


def test_a_missing_data_dir_is_made(tmp_path: Path) -> None:
    with data_dir_lock(tmp_path / "new" / "dir"):
        assert (tmp_path / "new" / "dir" / LOCK_FILE).exists()
