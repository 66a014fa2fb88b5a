"""hwfleet sim makes a key at its device's first connect, refusing a wrong directory at once."""

from __future__ import annotations

from pathlib import Path

import pytest

from hwfleet.sim.fleet import SimFleet
from hwfleet.sim.profiles import generate
from hwfleet.trust.identity import AgentIdentity, IdentityError


def test_keys_are_not_made_until_a_device_connects(tmp_path: Path) -> None:
    fleet = SimFleet(generate(3, seed=4), "127.0.0.1", 9, data_dir=str(tmp_path), seed=4)
    assert all(device.identity is None for device in fleet.devices)
    assert list(tmp_path.iterdir()) == []  # no key, no directory yet


def test_a_directory_holding_another_devices_identity_is_refused_at_start(tmp_path: Path) -> None:
    profile = generate(2, seed=4)
    probe = SimFleet(profile, "127.0.0.1", 9, data_dir=str(tmp_path), seed=4)
    first = probe.devices[0].runtime.info.uuid
    AgentIdentity.load_or_create(tmp_path / first, "00000000-0000-4000-8000-00000000000a")
    with pytest.raises(IdentityError, match="holds the identity of device"):
        SimFleet(profile, "127.0.0.1", 9, data_dir=str(tmp_path), seed=4)
