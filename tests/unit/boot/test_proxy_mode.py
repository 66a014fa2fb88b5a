"""proxyDHCP mode without a network: sightings as leases, the refused methods, orphan records."""

from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path
from typing import Any, cast

import pytest
from tests.unit.boot.test_proxydhcp_packets import request

from hwfleet.boot.kea_config import DhcpRange
from hwfleet.boot.kea_orphan import OWNER_FILE, find_orphan, process_start, read_owner, write_owner
from hwfleet.boot.leases import Lease
from hwfleet.boot.proxy_mode import REFUSED, ProxyDhcpRpc, Sightings
from hwfleet.boot.proxydhcp import REQUEST, ProxyDhcp
from hwfleet.bus.base import RpcError
from hwfleet.store import Store

MAC = "52:54:00:77:00:01"


async def test_sightings_are_leases_that_expire_and_move() -> None:
    seen = Sightings(ttl=60)
    seen.seen(MAC, "10.0.0.160")
    assert [(x.mac, x.ip, x.state) for x in await seen.all()] == [(MAC, "10.0.0.160", "active")]
    # The site server gave the address to another machine: the old holder loses it.
    seen.seen("52:54:00:77:00:02", "10.0.0.160")
    assert await seen.by_mac(MAC) == []
    assert (await seen.by_ip("10.0.0.160")).mac == "52:54:00:77:00:02"  # type: ignore[union-attr]
    old = Sightings(ttl=60)
    old._by_mac[MAC] = Lease(MAC, "10.0.0.161", int(time.time()) - 61, 60, "", "active")
    assert await old.all() == [] and not await old.delete("10.0.0.161")


async def test_proxy_rpc_answers_lookups_and_refuses_changes() -> None:
    seen = Sightings(ttl=60)
    seen.seen(MAC, "10.0.0.160")

    def no_pins(*_: Any) -> Any:
        raise AssertionError("proxy mode never checks or applies pins")

    pool = DhcpRange.parse("10.0.0.160-10.0.0.170")
    rpc = ProxyDhcpRpc(seen, cast(Store, None), pool, no_pins, no_pins)
    found = await rpc.call("lookupIpLease", {"mac": "52-54-00-77-00-01"})
    assert found["ip"] == "10.0.0.160" and found["pinned"] is False
    table = await rpc.call("peekLeaseTable", {})
    assert table["pins"] == [] and [x["ip"] for x in table["leases"]] == ["10.0.0.160"]
    for method in REFUSED:
        with pytest.raises(RpcError) as err:
            await rpc.call(method, {"mac": MAC, "ip": "10.0.0.165"})
        assert err.value.code == "unsupported" and "site's DHCP server" in err.value.msg


class Sent:
    def __init__(self) -> None:
        self.sent: list[tuple[bytes, Any]] = []

    def sendto(self, data: bytes, addr: Any) -> None:
        self.sent.append((data, addr))


def test_a_request_on_4011_is_a_sighting_of_its_source() -> None:
    seen: list[tuple[str, str]] = []
    proto = ProxyDhcp("10.0.0.1", "http://h", False, lambda mac, ip: seen.append((mac, ip)))
    proto.connection_made(cast(asyncio.DatagramTransport, Sent()))
    proto.datagram_received(request((60, b"PXEClient"), kind=REQUEST), ("10.0.0.163", 68))
    assert seen == [(MAC, "10.0.0.163")]
    # Not PXE: not answered, not a sighting.
    proto.datagram_received(request(kind=REQUEST), ("10.0.0.164", 68))
    assert seen == [(MAC, "10.0.0.163")] and proto.answered == 1


def test_a_pxe_request_to_the_site_server_is_a_sighting_of_the_address_asked() -> None:
    seen: list[tuple[str, str]] = []
    proto = ProxyDhcp("10.0.0.1", "http://h", True, lambda mac, ip: seen.append((mac, ip)))
    sent = Sent()
    proto.connection_made(cast(asyncio.DatagramTransport, sent))
    asked = (50, bytes([10, 0, 0, 170]))
    proto.datagram_received(request((60, b"PXEClient"), asked, kind=REQUEST), ("0.0.0.0", 68))
    assert seen == [(MAC, "10.0.0.170")] and sent.sent == []  # seen, never answered
    proto.datagram_received(request(asked, kind=REQUEST), ("0.0.0.0", 68))  # not PXE
    assert seen == [(MAC, "10.0.0.170")]


def test_owner_record_tells_an_orphan_from_a_live_controller(tmp_path: Path) -> None:
    write_owner(tmp_path, kea_pid=os.getpid())
    owner = read_owner(tmp_path)
    assert owner is not None and owner.controller_pid == os.getpid()
    assert owner.controller_start == process_start(os.getpid())
    # Its controller (this process) runs: not an orphan.
    assert find_orphan(tmp_path, tmp_path / "kea-dhcp4.json") is None
    # A controller that is gone, but the "Kea" pid is no kea-dhcp4 with this config: a reused
    # pid is never taken for Kea.
    doc = json.loads((tmp_path / OWNER_FILE).read_text())
    doc["controller_start"] = -1
    (tmp_path / OWNER_FILE).write_text(json.dumps(doc))
    assert find_orphan(tmp_path, tmp_path / "kea-dhcp4.json") is None
    (tmp_path / OWNER_FILE).write_text("not json")
    assert read_owner(tmp_path) is None
