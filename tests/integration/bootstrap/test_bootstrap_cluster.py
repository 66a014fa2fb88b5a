"""``hwfleet bootstrap --cluster-sync FOLDER`` installs the folder-sync SSH trust itself.

Two targets on one machine: two real OpenSSH servers on port 22 of two loopback addresses,
each in its own mount namespace with its own directory bound on the one ``--root`` (so
each has its own fake root, agent and root's authorized_keys). After one bootstrap run:
each target holds its own sync key, the other's key in authorized_keys limited to
``rrsync -ro FOLDER`` from the other's address only, and the other's sshd host key in the
agent's cluster known_hosts. Then the sync command hwfleet runs (hwfleet.mdp.sync) pulls
the folder over real SSH with those keys; a shell command with the same key, or the same
key from another address, is refused. A second run changes nothing and says so.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import shlex
import signal
import subprocess
from pathlib import Path

import pytest
from tests.integration.bootstrap.sshd import sshd
from tests.integration.bootstrap.test_bootstrap_sshd import cli
from tests.integration.controller.conftest import controller_settings, running_controller

from hwfleet.bootstrap.cluster import installed_for
from hwfleet.bootstrap.units import Layout
from hwfleet.mdp.sync import FolderSync, SyncConfig
from hwfleet.mdp.trust import rrsync_peers

pytestmark = pytest.mark.slow

FOLDER = "/srv/shared"


def ssh_as(me: str, key: Path, known: Path) -> list[str]:
    """The sync's ssh, plus BindAddress: on one loopback the source would be 127.0.0.1, and
    authorized_keys lets the key in only from the member's own address."""
    return ["ssh", "-i", str(key), "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes",
            "-o", "StrictHostKeyChecking=yes", "-o", f"UserKnownHostsFile={known}",
            "-o", f"BindAddress={me}"]  # fmt: skip


async def test_bootstrap_installs_cluster_keys(
    tmp_path: Path, wheels: Path, deadline: float
) -> None:
    target = tmp_path / "target"  # the --root; each sshd sees its own directory there
    target.mkdir()
    net = f"127.{random.randint(100, 250)}.{random.randint(0, 255)}"
    addrs = [f"{net}.1", f"{net}.2"]
    owns = [tmp_path / "own_a", tmp_path / "own_b"]
    for own in owns:
        own.mkdir()
    layout = Layout(str(target))
    shared = layout.at(FOLDER)
    auth_rel = "/root/.ssh/authorized_keys"
    with (
        sshd(tmp_path / "sshd_a", deadline, address=addrs[0], port=22,
             authorized=layout.at(auth_rel), mount=(owns[0], target)) as server,
        sshd(tmp_path / "sshd_b", deadline, address=addrs[1], port=22,
             authorized=layout.at(auth_rel), mount=(owns[1], target)),
    ):  # fmt: skip
        # Both servers take the test's client key for root (the sshd helper's own file).
        (tmp_path / "sshd_b" / "authorized_keys").write_text(
            (tmp_path / "sshd_a" / "client_key.pub").read_text()
        )
        settings = controller_settings(tmp_path / "ctl", enroll_password="")
        async with running_controller(settings) as ctl:
            gw_host, gw_port = ctl.gateway.address
            argv = [
                "bootstrap", *addrs, "--identity", str(server.client_key),
                "--controller", f"{gw_host}:{gw_port}", "--root", str(target),
                "--wheelhouse", str(wheels), "--cluster-sync", FOLDER,
                # Two agents on one machine: the diagnostics endpoints would share a port.
                "--agent-setting", "mdp_listen=", "--agent-setting", "discovery=false",
                "--api", ctl.api_url, "--data-dir", settings.data_dir, "--json",
            ]  # fmt: skip
            try:
                code, first, err = await cli(*argv, timeout=900)
                assert code == 0, json.dumps(first) + err
                by_ip = {r["host"]: r for r in first}
                for me, other in (addrs, addrs[::-1]):
                    assert by_ip[me]["status"] == "installed", by_ip[me]
                    assert by_ip[me]["cluster_trust"] == "installed"
                    assert by_ip[me]["cluster_peers"] == [other]
                    assert "cluster_identity" not in by_ip[me]  # internal, not printed
                assert installed_for(settings.data_dir, shared, addrs)

                a, b = owns
                for own, _me, other_own, other in ((a, addrs[0], b, addrs[1]),
                                                  (b, addrs[1], a, addrs[0])):  # fmt: skip
                    data = own / "var/lib/hwfleet"
                    key = data / "cluster_ssh_key"
                    assert oct(key.stat().st_mode & 0o777) == "0o600"
                    theirs = (other_own / "var/lib/hwfleet/cluster_ssh_key.pub").read_text()
                    lines = (own / "root/.ssh/authorized_keys").read_text().splitlines()
                    assert lines == [
                        f'command="/usr/bin/rrsync -ro {shared}",restrict,from="{other}" '
                        f"{' '.join(theirs.split()[:2])} hwfleet-mdp-cluster:{other}"
                    ]
                    host_pub = tmp_path / f"sshd_{'b' if own == a else 'a'}" / "host_key.pub"
                    known = (data / "known_hosts").read_text()
                    assert f"{other} {' '.join(host_pub.read_text().split()[:2])}" in known
                    assert rrsync_peers(str(data / "known_hosts")) == {other}
                    config = (own / "opt/hwfleet/agent.toml").read_text()
                    assert f'mdp_cluster_authorized_keys = "{target}{auth_rel}"' in config
                    assert (own / FOLDER.lstrip("/")).is_dir()

                # hwfleet's own pull, over real SSH with what bootstrap installed.
                (b / "srv/shared/from_b.txt").write_text("b's file")
                data_a = a / "var/lib/hwfleet"
                sync = FolderSync(SyncConfig(str(data_a / "cluster_ssh_key"),
                                             str(data_a / "known_hosts")))  # fmt: skip
                sync.rrsync_peers = rrsync_peers(sync.config.known_hosts)  # type: ignore[union-attr]
                into = tmp_path / "pulled"
                into.mkdir()
                command = sync.command(addrs[0], addrs[1], str(into))
                ssh = ssh_as(addrs[0], data_a / "cluster_ssh_key", data_a / "known_hosts")
                command[command.index("-e") + 1] = shlex.join(ssh)
                pulled = subprocess.run(command, capture_output=True, text=True, timeout=60)
                assert pulled.returncode == 0, pulled.stderr
                assert (into / "from_b.txt").read_text() == "b's file"

                # The key opens rsync of that folder, read-only, from that address: nothing else.
                shell = subprocess.run([*ssh, f"root@{addrs[1]}", "cat /etc/hostname"],
                                       capture_output=True, text=True, timeout=60)  # fmt: skip
                assert shell.returncode != 0 and "rrsync" in shell.stderr, shell.stderr
                push = subprocess.run(
                    ["rsync", "-a", "-e", shlex.join(ssh), str(into) + "/", f"root@{addrs[1]}:./"],
                    capture_output=True, text=True, timeout=60,
                )  # fmt: skip
                assert push.returncode != 0, "rrsync -ro must refuse a write"
                elsewhere = [*ssh[:-2], "-o", f"BindAddress={net}.9"]
                moved = subprocess.run([*elsewhere, f"root@{addrs[1]}", "true"],
                                       capture_output=True, text=True, timeout=60)  # fmt: skip
                assert moved.returncode == 255 and "Permission denied" in moved.stderr

                code, second, err = await cli(*argv, timeout=600)
                assert code == 0, json.dumps(second) + err
                for result in second:
                    assert result["status"] == "unchanged", result
                    assert result["cluster_trust"] == "unchanged", result
            finally:
                for own in owns:  # the init scripts' paths exist only in the sshds' namespaces
                    pidfile = own / "run/hwfleet-agent.pid"
                    if pidfile.exists():
                        with contextlib.suppress(ProcessLookupError, ValueError):
                            os.kill(int(pidfile.read_text()), signal.SIGTERM)
