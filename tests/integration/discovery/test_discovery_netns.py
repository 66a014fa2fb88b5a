"""Discovery across a real virtual network: namespaces, veth pairs and a bridge.

Topology (all created here, deleted in ``finally``): a bridge ``br0`` in its own
namespace; the controller, three agents and an attacker each in a namespace joined
to the bridge by a veth pair, addresses 10.213.0.0/24, multicast enabled. Every
role runs as ``ip netns exec NS python netns_runner.py ...``.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat
from tests.conftest import service_missing

from hwfleet.discovery import public_raw

pytestmark = pytest.mark.netns

RUNNER = str(Path(__file__).with_name("netns_runner.py"))
NODES = {"c": 1, "a0": 10, "a1": 11, "a2": 12, "x": 66}
SUBNET = "10.213.0"


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=10)


@pytest.fixture(scope="module")
def topology() -> Iterator[dict[str, str]]:
    if os.geteuid() != 0 or shutil.which("ip") is None:
        service_missing("network-namespace tests need root and iproute2")
    prefix = f"hwd{secrets.token_hex(3)}"
    bridge_ns = f"{prefix}-br"
    names = {node: f"{prefix}-{node}" for node in NODES}
    created: list[str] = []
    try:
        ip("netns", "add", bridge_ns)
        created.append(bridge_ns)
        ip("-n", bridge_ns, "link", "add", "br0", "type", "bridge", "mcast_snooping", "0")
        ip("-n", bridge_ns, "link", "set", "br0", "up")
        for node, host in NODES.items():
            ns = names[node]
            ip("netns", "add", ns)
            created.append(ns)
            port = f"p{node}"
            ip(
                "-n",
                ns,
                "link",
                "add",
                "d0",
                "type",
                "veth",
                "peer",
                "name",
                port,
                "netns",
                bridge_ns,
            )
            ip("-n", bridge_ns, "link", "set", port, "master", "br0", "up")
            ip("-n", ns, "link", "set", "lo", "up")
            ip("-n", ns, "addr", "add", f"{SUBNET}.{host}/24", "brd", f"{SUBNET}.255", "dev", "d0")
            ip("-n", ns, "link", "set", "d0", "multicast", "on", "up")
            ip("-n", ns, "route", "add", "224.0.0.0/4", "dev", "d0")
        yield names
    finally:
        for ns in reversed(created):
            subprocess.run(["ip", "netns", "del", ns], check=False, capture_output=True)


class Role:
    """One runner process in a namespace, spoken to line by line."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc

    async def read(self, seconds: float = 15.0) -> Any:
        assert self.proc.stdout is not None
        async with asyncio.timeout(seconds):
            line = await self.proc.stdout.readline()
        if not line:
            assert self.proc.stderr is not None
            raise AssertionError((await self.proc.stderr.read()).decode())
        return json.loads(line)

    async def ask(self, command: str, seconds: float = 15.0) -> Any:
        assert self.proc.stdin is not None
        self.proc.stdin.write(command.encode() + b"\n")
        await self.proc.stdin.drain()
        return await self.read(seconds)


@pytest.fixture
async def spawn() -> AsyncIterator[Any]:
    procs: list[asyncio.subprocess.Process] = []

    async def start(ns: str, *args: str, ready: bool = True) -> Role:
        proc = await asyncio.create_subprocess_exec(
            "ip",
            "netns",
            "exec",
            ns,
            sys.executable,
            RUNNER,
            *args,
            "--interface",
            "d0",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        procs.append(proc)
        role = Role(proc)
        if ready:
            assert (await role.read()) == {"ready": True}
        return role

    yield start
    for proc in procs:
        if proc.returncode is None:
            proc.kill()
        await proc.wait()


def key_hex(key: Ed25519PrivateKey) -> str:
    return key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption()).hex()


async def start_agents(spawn: Any, names: dict[str, str]) -> list[dict[str, Any]]:
    agents = []
    for i, node in enumerate(("a0", "a1", "a2")):
        key = Ed25519PrivateKey.generate()
        agent = {
            "uuid": f"00000000-0000-4000-8000-0000000000a{i}",
            "key": key,
            "address": f"{SUBNET}.{NODES[node]}",
            "node": node,
        }
        agent["role"] = await spawn(
            names[node],
            "responder",
            "--uuid",
            agent["uuid"],
            "--key",
            key_hex(key),
            "--name",
            f"ns-agent-{i}",
            "--serial",
            str(700 + i),
            "--address",
            agent["address"],
        )
        agents.append(agent)
    return agents


def known_args(agents: list[dict[str, Any]]) -> list[str]:
    return ["--known", *(f"{a['uuid']}={public_raw(a['key']).hex()}" for a in agents)]


async def test_agents_in_other_namespaces_are_found_by_multicast(
    topology: dict[str, str], spawn: Any
) -> None:
    agents = await start_agents(spawn, topology)
    browser = await spawn(topology["c"], "browser", *known_args(agents))
    found = await browser.ask("scan 5 3")
    assert sorted(d["ipaddr"] for d in found) == [a["address"] for a in agents]
    for doc in found:
        assert doc["trusted"] and doc["signed"] and not doc["spoofed"]
        assert doc["state"] == "online" and doc["source"] == doc["ipaddr"]
        assert doc["name"].startswith("ns-agent-") and doc["model_id"] == "netns-model"
    for agent in agents:
        stats = await agent["role"].ask("stats")
        assert stats["replies"] >= 1 and stats.get("bad", 0) == 0


async def test_spoofed_announcement_across_the_bridge_is_flagged(
    topology: dict[str, str], spawn: Any
) -> None:
    agents = await start_agents(spawn, topology)
    browser = await spawn(topology["c"], "browser", *known_args(agents))
    assert len(await browser.ask("scan 5 3")) == 3
    victim = agents[0]
    forger = await spawn(
        topology["x"],
        "responder",
        "--uuid",
        victim["uuid"],
        "--key",
        key_hex(Ed25519PrivateKey.generate()),
        "--name",
        "evil",
        "--address",
        f"{SUBNET}.66",
    )
    assert (await forger.ask("announce")) == {"sent": 1}
    update = await browser.ask("next 5")
    while update is not None and update["event"] != "spoofed":
        update = await browser.ask("next 5")
    assert update is not None, "the forged announcement was not reported"
    assert update["uuid"] == victim["uuid"] and update["spoofed"]
    assert update["spoof_source"] == f"{SUBNET}.66"
    assert update["name"] == "ns-agent-0" and update["ipaddr"] == victim["address"]
    # The genuine agent's own announcement is still accepted and trusted.
    assert (await victim["role"].ask("announce")) == {"sent": 1}
    update = await browser.ask("next 5")
    while update is not None and update["event"] == "state":
        update = await browser.ask("next 5")
    assert update is not None and update["trusted"] and update["uuid"] == victim["uuid"]
    assert (await browser.ask("stats"))["spoofed"] == 1


async def test_malformed_packets_are_ignored_and_counted(
    topology: dict[str, str], spawn: Any
) -> None:
    agents = await start_agents(spawn, topology)
    target = agents[0]
    blaster = await spawn(
        topology["c"],
        "blast",
        "--target",
        target["address"],
        "--broadcast",
        f"{SUBNET}.255",
        "--agents",
        "3",
        ready=False,
    )
    report = await blaster.read(20)
    # Each valid query is answered (by every agent for group/broadcast), echoing its nonce,
    # and the garbage sent before it produced no reply at all.
    assert [len(report[how]) for how in ("unicast", "multicast", "broadcast")] == [1, 3, 3]
    for how, replies in report.items():
        for reply in replies:
            assert reply["ok"] and reply["size"] <= reply["query"], (how, reply)
    assert {r["from"] for r in report["multicast"]} == {a["address"] for a in agents}
    # Multicast and broadcast reach every agent; the unicast garbage only the target.
    stats = await target["role"].ask("stats")
    assert stats["bad"] == 3 * 8 and stats["replies"] >= 3
    for code in ("short", "oversized", "version", "truncated", "unpadded", "json"):
        assert stats[f"bad_{code}"] >= 3, (code, stats)
    other = await agents[1]["role"].ask("stats")
    assert other["bad"] == 2 * 8
