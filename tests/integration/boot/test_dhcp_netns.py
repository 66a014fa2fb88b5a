"""Kea in a namespace, busybox udhcpc clients in others, the ``dhcp`` RPCs over the bus.

Checks the nine methods against what the clients really obtained, the bind events, a
MAC becoming a discovered node, pins that survive a lease removal, conflicts and bad
params refused, and Kea killed and restarted by the supervisor.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

import pytest
from tests.integration.boot.bootnet import SERVER_IP, SUBNET

from hwfleet.boot.nodes import node_id_for_mac
from hwfleet.bus.base import Bus, RpcError


async def test_lease_rpcs_match_what_the_client_got(boot: Any, bus: Bus, tmp_path: Path) -> None:
    service, net, watch = boot
    status = await service.status()
    assert status["server_ip"] == SERVER_IP  # read from the interface inside the namespace
    assert status["kea"]["alive"]

    client = net.add_client()
    mac = net.mac(client)
    got = await net.dhcp(client, tmp_path)
    leased = got["ip"]
    assert got["serverid"] == SERVER_IP

    node = node_id_for_mac(mac)
    bind = await watch.wait(f"dhcp.bind.success.{node}")
    assert bind["mac"] == mac and bind["ip"] == leased and bind["discovered"] is True
    async with service._store.tx(readonly=True) as tx:
        discovered = {r.uuid: r for r in await tx.discovered.list()}
    assert discovered[node].ipaddr == leased

    found = await bus.call("dhcp", "lookupIpLease", {"mac": mac.upper().replace(":", "-")})
    assert found["ip"] == leased and found["mac"] == mac and found["pinned"] is False
    assert (await bus.call("dhcp", "ipInRange", {"ip": leased}))["inRange"] is True
    assert (await bus.call("dhcp", "ipInRange", {"ip": f"{SUBNET}.99"}))["inRange"] is False
    table = await bus.call("dhcp", "peekLeaseTable", {})
    assert [(x["mac"], x["ip"]) for x in table["leases"]] == [(mac, leased)]

    # Pin the MAC to another address, drop its lease: the next DHCP gives the pinned one.
    pinned = f"{SUBNET}.120"
    assert await bus.call("dhcp", "pinMac", {"mac": mac, "ip": pinned}) == {
        "mac": mac,
        "ip": pinned,
    }
    assert (await bus.call("dhcp", "removeLease", {"mac": mac}))["removed"] == [leased]
    assert (await bus.call("dhcp", "lookupIpLease", {"mac": mac}))["expires"] is None
    again = await net.dhcp(client, tmp_path)
    assert again["ip"] == pinned
    await watch.wait(f"dhcp.bind.success.{node}")
    assert (await bus.call("dhcp", "lookupIpLease", {"mac": mac}))["pinned"] is True

    # A second client: conflicts with the first one's lease and pin are refused.
    other = net.add_client()
    other_mac = net.mac(other)
    other_ip = (await net.dhcp(other, tmp_path))["ip"]
    assert other_ip not in (leased, pinned) or other_ip == leased
    with pytest.raises(RpcError) as caught:
        await bus.call("dhcp", "pinIp", {"ip": pinned, "mac": other_mac})
    assert caught.value.code == "conflict" and mac in caught.value.msg
    with pytest.raises(RpcError) as caught:
        await bus.call("dhcp", "pinMac", {"mac": mac, "ip": f"{SUBNET}.121"})
    assert caught.value.code == "conflict"
    assert await bus.call("dhcp", "pinIp", {"ip": other_ip}) == {"mac": other_mac, "ip": other_ip}

    assert await bus.call("dhcp", "unpinIp", {"ip": other_ip}) == {
        "mac": other_mac,
        "ip": other_ip,
        "unpinned": True,
    }
    assert (await bus.call("dhcp", "unpinMac", {"mac": mac}))["unpinned"] is True
    assert (await bus.call("dhcp", "unpinMac", {"mac": mac}))["unpinned"] is False
    removed = await bus.call("dhcp", "removeLeaseByIp", {"ip": other_ip})
    assert removed == {"ip": other_ip, "mac": other_mac, "removed": True}
    table = await bus.call("dhcp", "peekLeaseTable", {})
    assert [x["mac"] for x in table["leases"]] == [mac] and table["pins"] == []


@pytest.mark.parametrize(
    ("method", "params", "needle"),
    [
        ("lookupIpLease", {}, "'mac'"),
        ("lookupIpLease", {"mac": "zz:zz"}, "not a MAC"),
        ("ipInRange", {"ip": 7}, "IPv4"),
        ("ipInRange", {"ip": "10.0.0.999"}, "not an IPv4"),
        ("pinMac", {"mac": "02:00:00:00:00:01", "ip": "192.168.1.5"}, "not a host address"),
        ("pinMac", {"mac": "02:00:00:00:00:01", "ip": SERVER_IP}, "own address"),
        ("removeLeaseByIp", {"ip": ["x"]}, "IPv4"),
    ],
)
async def test_bad_params_are_refused(
    boot: Any, bus: Bus, method: str, params: dict[str, Any], needle: str
) -> None:
    with pytest.raises(RpcError) as caught:
        await bus.call("dhcp", method, params)
    assert caught.value.code == "bad_params" and needle in caught.value.msg
    assert (await bus.call("dhcp", "peekLeaseTable", {}))["leases"] == []  # still serving


async def test_kea_killed_is_restarted(boot: Any, bus: Bus, tmp_path: Path) -> None:
    service, net, watch = boot
    client = net.add_client()
    leased = (await net.dhcp(client, tmp_path))["ip"]
    pid = service.kea.pid
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    exited = await watch.wait("boot.kea.exited")
    assert exited["status"] == -signal.SIGKILL
    started = await watch.wait("boot.kea.started")
    assert started["restarts"] == 1 and started["pid"] != pid
    # The lease file survived: the new Kea knows the lease, and serves new clients.
    found = await bus.call("dhcp", "lookupIpLease", {"mac": net.mac(client)})
    assert found["ip"] == leased
    second = net.add_client()
    assert (await net.dhcp(second, tmp_path))["ip"].startswith(f"{SUBNET}.")
