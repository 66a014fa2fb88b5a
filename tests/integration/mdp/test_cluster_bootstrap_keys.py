"""``hwfleet mdp cluster`` relies on the keys ``hwfleet bootstrap --cluster-sync`` installed.

Two real endpoints (each with its cluster member and sync configuration) on two loopback
addresses, the CLI as a subprocess. With the controller's record of a bootstrap that made
both members trust each other for the folder, the command sends no ``cluster_identity`` or
``cluster_trust`` (no authorized_keys appears on either member) and says ``keys:
bootstrap``; for a folder bootstrap did not cover it exchanges them as before.
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from tests.integration.bootstrap.sshd import keygen
from tests.integration.bootstrap.test_bootstrap_sshd import cli

from hwfleet.bootstrap import cluster
from hwfleet.mdp.cluster import ClusterMember
from hwfleet.mdp.endpoint import MdpEndpoint
from hwfleet.mdp.keys import KnownMachines
from hwfleet.mdp.operations import OperationContext, load_operations
from hwfleet.mdp.sync import FolderSync, SyncConfig


@pytest.fixture
async def members(tmp_path: Path) -> AsyncIterator[tuple[list[str], int]]:
    net = f"127.{random.randint(100, 250)}.{random.randint(0, 255)}"
    addrs = [f"{net}.1", f"{net}.2"]
    endpoints = []
    port = 0
    try:
        for n, addr in enumerate(addrs):
            work = tmp_path / f"m{n}"
            work.mkdir()
            keygen(work / "host_key")
            ops = load_operations()
            context = OperationContext(ops)
            config = SyncConfig(str(work / "sync_key"), str(work / "known_hosts"),
                                authorized_keys=str(work / "authorized_keys"),
                                host_key=str(work / "host_key.pub"))  # fmt: skip
            member = ClusterMember(context, FolderSync(config))
            key = bytes([n + 1]) * 32
            KnownMachines(tmp_path / "ctl").put(addr, key)
            ep = MdpEndpoint(key, ops, bind=addr, port=port, context=context, cluster=member.handle)
            await ep.start()
            port = ep.port  # the second member on the same port, as a fleet is
            endpoints.append(ep)
        yield addrs, port
    finally:
        for ep in endpoints:
            await ep.close()


async def test_cluster_uses_bootstrap_keys(tmp_path: Path, members: tuple[list[str], int]) -> None:
    addrs, port = members
    ctl = str(tmp_path / "ctl")
    shared = tmp_path / "shared"
    shared.mkdir()
    ident = {"ssh_key": "ssh-ed25519 AAAA", "host_key": "ssh-ed25519 BBBB", "rrsync": True}
    cluster.record(ctl, str(shared), addrs[0], ident, [addrs[1]])
    cluster.record(ctl, str(shared), addrs[1], ident, [addrs[0]])
    argv = ["mdp", "cluster", *addrs, "--sync", str(shared), "--port", str(port),
            "--data-dir", ctl, "--json"]  # fmt: skip
    code, answers, err = await cli(*argv, timeout=120)
    assert code == 0, err
    for addr in addrs:
        assert answers[addr]["keys"] == "bootstrap", answers
        assert answers[addr]["cluster_machines"] == addrs
    for n in (0, 1):  # no cluster_trust reached either member
        assert not (tmp_path / f"m{n}" / "authorized_keys").exists()

    other = tmp_path / "other"
    other.mkdir()
    argv[argv.index("--sync") + 1] = str(other)
    code, answers, err = await cli(*argv, timeout=120)
    assert code == 0, err
    assert {answers[a]["keys"] for a in addrs} == {"exchanged"}
    for n, peer in ((0, addrs[1]), (1, addrs[0])):
        lines = (tmp_path / f"m{n}" / "authorized_keys").read_text()
        assert f'from="{peer}"' in lines and f"hwfleet-mdp-cluster:{peer}" in lines
