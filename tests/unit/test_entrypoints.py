"""hwfleet's light entry-point reader sees what importlib.metadata sees."""

from __future__ import annotations

import importlib.metadata
from pathlib import Path

import pytest

from hwfleet.entrypoints import entry_points


@pytest.mark.parametrize(
    "group",
    ["hwfleet.agent_commands", "hwfleet.hardware_managers", "console_scripts", "no.such.group"],
)
def test_the_same_points_as_importlib_metadata(group: str) -> None:
    expected = sorted((p.name, p.value) for p in importlib.metadata.entry_points(group=group))
    assert sorted((p.name, p.value) for p in entry_points(group)) == expected


def test_a_distribution_on_the_path_is_found_and_loads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "ep_probe_mod.py").write_text("class Thing:\n    VALUE = 7\n")
    dist = tmp_path / "ep_probe-1.0.dist-info"
    dist.mkdir()
    (dist / "entry_points.txt").write_text(
        "# a comment\n[other]\nx = nowhere:y\n\n"
        "[ep.probe]\nthing = ep_probe_mod:Thing.VALUE [extra]\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    [point] = entry_points("ep.probe")
    assert (point.name, point.value, point.group) == (
        "thing",
        "ep_probe_mod:Thing.VALUE",
        "ep.probe",
    )
    assert point.load() == 7
