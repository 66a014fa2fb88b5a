"""What the controller remembers of the cluster trust bootstrap installed, and when
``hwfleet mdp cluster`` may rely on it instead of exchanging keys itself."""

from __future__ import annotations

from pathlib import Path

import pytest

from hwfleet.bootstrap import cluster
from hwfleet.bootstrap.units import Layout

IDENT = {"ssh_key": "ssh-ed25519 AAAA", "host_key": "ssh-ed25519 BBBB", "rrsync": True}


def test_members_count_as_installed_only_when_each_trusts_all_others(tmp_path: Path) -> None:
    data = str(tmp_path)
    a, b, c = "10.0.0.1", "10.0.0.2", "10.0.0.3"
    assert not cluster.installed_for(data, "/srv/s", [a, b])  # nothing recorded
    cluster.record(data, "/srv/s", a, IDENT, [b])
    assert not cluster.installed_for(data, "/srv/s", [a, b])  # b trusts nobody yet
    cluster.record(data, "/srv/s", b, IDENT, [a])
    assert cluster.installed_for(data, "/srv/s", [a, b])
    assert not cluster.installed_for(data, "/srv/other", [a, b])  # another folder
    assert not cluster.installed_for(data, "/srv/s", [a, b, c])  # a member bootstrap missed
    assert not cluster.installed_for(data, "/srv/s", [])
    assert oct((tmp_path / cluster.RECORD).stat().st_mode & 0o777) == "0o600"


def test_the_agent_is_pointed_at_the_authorized_keys_bootstrap_writes() -> None:
    fake = Layout("/tmp/t")
    assert cluster.agent_settings(fake, None, {"x": 1}) == {"x": 1}
    assert cluster.agent_settings(fake, "/srv/s", {})["mdp_cluster_authorized_keys"] == (
        "/tmp/t/root/.ssh/authorized_keys"
    )
    assert cluster.authorized_keys(Layout(), {}) == "/root/.ssh/authorized_keys"
    with pytest.raises(ValueError, match="mdp_cluster_authorized_keys"):
        cluster.authorized_keys(Layout(), {"mdp_cluster_user": "sync"})
