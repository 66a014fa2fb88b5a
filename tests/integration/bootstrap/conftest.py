"""One wheelhouse for every bootstrap test of a run: ``pip wheel`` of hwfleet and its
dependencies takes a minute or more on a loaded machine, and the wheels do not change
between tests (each test still pushes and installs them for real)."""

from __future__ import annotations

from pathlib import Path

import pytest

from hwfleet.bootstrap.wheels import wheelhouse


@pytest.fixture(scope="session")
def wheels(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return wheelhouse(str(tmp_path_factory.mktemp("wheelhouse")))
