"""``hwfleet server --dhcp-proxy`` beside the site's DHCP server, on the namespaced boot network.

busybox udhcpd (the site's server) gives the addresses from its own namespace; ``hwfleet
server --boot-interface kea0 --dhcp-proxy`` runs in the server namespace and starts no Kea.
A PXE client gets its address from udhcpd and its boot file from hwfleet (an offer without
an address, then a DHCPACK on 4011); hwfleet learns the client's address from that request,
so the client's boot script carries a discovery token for it alone, the bind is an event,
``boot leases`` lists it and a pin is refused (the addresses are udhcpd's).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from tests.integration.boot.bootnet import SITE_DHCP, SUBNET, boot_network, ip, run_in
from tests.integration.boot.server_proc import API, server_in
from tests.integration.boot.test_proxydhcp import pxe_client

from hwfleet.boot.nodes import node_id_for_mac

pytestmark = [pytest.mark.netns]


async def test_server_answers_boot_files_beside_the_site_dhcp(tmp_path: Path) -> None:
    with boot_network() as net:
        udhcpd = await net.site_dhcp(tmp_path)
        data = tmp_path / "controller"
        try:
            async with server_in(net.server, data, "--dhcp-proxy") as server:
                status = await server.cli_json("boot", "status")
                assert status["mode"] == "proxy" and status["kea"] is None, status
                assert not (data / "boot" / "kea" / "kea4-ctrl.sock").exists()

                pxe = net.add_client()
                got = await pxe_client(pxe, net.clients[pxe][0], pxe=True, ipxe=False)
                by_server = {o["server"]: o for o in got["offers"]}
                assert set(by_server) == {SITE_DHCP, status["server_ip"]}, got
                address = by_server[SITE_DHCP]["yiaddr"]
                assert address.startswith(f"{SUBNET}.1")
                proxied = by_server[status["server_ip"]]
                assert proxied["yiaddr"] == "0.0.0.0" and proxied["file"] == "undionly.kpxe"
                assert got["ack"]["type"] == 5 and got["ack"]["file"] == "undionly.kpxe"

                # hwfleet saw which address the site server gave this MAC.
                mac = net.mac(pxe)
                leases = await server.cli_json("boot", "leases")
                assert [(x["mac"], x["ip"]) for x in leases["leases"]] == [(mac, address)]
                code, out = await server.cli("boot", "pin", mac, f"{SUBNET}.50")
                assert code != 0 and "409" in out and "proxyDHCP" in out, out

                # The discovery script (with a token) goes to that address only.
                url = f"{API}/boot/script?mac={mac}"
                code, script = await run_in(pxe, "busybox", "wget", "-q", "-O", "-", url)
                assert code == 0 and b"hwfleet.token=" in script, script
                other = net.add_client()
                ip("-n", other, "addr", "add", f"{SUBNET}.199/24", "dev", net.clients[other][0])
                code, out = await run_in(other, "busybox", "wget", "-q", "-O", "-", url)
                assert code != 0 and b"hwfleet.token" not in out  # 403

                # An iPXE client is sent to the HTTP chain script.
                ipxe = net.add_client()
                got = await pxe_client(ipxe, net.clients[ipxe][0], pxe=True, ipxe=True)
                files = {o["file"] for o in got["offers"] if o["yiaddr"] == "0.0.0.0"}
                assert files == {f"{API}/boot/ipxe"}, got

                events = await server.cli_json("events", "--limit", "200")
                keys = {e.get("routing_key") or e.get("key") for e in _items(events)}
                assert f"dhcp.bind.success.{node_id_for_mac(mac)}" in keys, keys
                devices = await server.cli_json("devices")
                discovered = [d for d in _items(devices) if d.get("state") == "discovered"]
                assert len(discovered) >= 2, devices
        finally:
            udhcpd.terminate()
            await asyncio.wait_for(udhcpd.wait(), 10)


def _items(doc: Any) -> list[dict[str, Any]]:
    if isinstance(doc, dict):
        for key in ("events", "items", "devices"):
            if isinstance(doc.get(key), list):
                return list(doc[key])
        return []
    return list(doc)
