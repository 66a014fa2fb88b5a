"""proxyDHCP beside another DHCP server, on the namespaced boot network.

busybox udhcpd (the site's DHCP server) hands out addresses from its own namespace; hwfleet's
responder (``python -m hwfleet.boot.proxydhcp``) runs in the server namespace. A client
namespace broadcasts DHCPDISCOVERs: a PXE one gets two offers (an address from udhcpd, the
boot file and no address from hwfleet), a plain one only udhcpd's; the PXE client then asks
the proxy on port 4011 and gets a DHCPACK with the boot file.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import pytest
from tests.integration.boot.bootnet import (
    SERVER_IF,
    SERVER_IP,
    SITE_DHCP,
    SUBNET,
    boot_network,
    run_in,
)

pytestmark = [pytest.mark.netns]

HTTP = f"http://{SERVER_IP}:8780"

CLIENT = r"""
import json, os, socket, struct, subprocess, sys, time
ifname, pxe, ipxe = sys.argv[1], sys.argv[2] == "1", sys.argv[3] == "1"
mac = bytes.fromhex(open(f"/sys/class/net/{ifname}/address").read().strip().replace(":", ""))
def packet(kind, xid, ciaddr=b"\0\0\0\0"):
    head = struct.pack("!BBBB4sHH4s4s4s4s16s64s128s", 1, 1, 6, 0, xid, 0, 0x8000, ciaddr,
                       bytes(4), bytes(4), bytes(4), mac + bytes(10), bytes(64), bytes(128))
    opts = bytes([53, 1, kind])
    if pxe:
        opts += bytes([60, 32]) + b"PXEClient:Arch:00000:UNDI:002001" + bytes([93, 2, 0, 0])
    if ipxe:
        opts += bytes([77, 4]) + b"iPXE"
    return head + b"\x63\x82\x53\x63" + opts + b"\xff"
def read(data):
    yiaddr, siaddr = socket.inet_ntoa(data[16:20]), socket.inet_ntoa(data[20:24])
    file = data[108:236].rstrip(b"\0").decode()
    opts, i = {}, 240
    while i < len(data) and data[i] != 255:
        opts[data[i]] = data[i + 2:i + 2 + data[i + 1]]; i += 2 + data[i + 1]
    return {"yiaddr": yiaddr, "siaddr": siaddr, "file": file, "type": opts[53][0],
            "server": socket.inet_ntoa(opts[54]), "vendor": opts.get(60, b"").decode()}
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
s.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, ifname.encode())
s.bind(("0.0.0.0", 68))
s.sendto(packet(1, b"abcd"), ("255.255.255.255", 67))
offers, deadline = [], time.monotonic() + 4
while time.monotonic() < deadline:
    s.settimeout(max(0.05, deadline - time.monotonic()))
    try:
        offers.append(read(s.recv(1500)))
    except socket.timeout:
        break
ack = None
proxy = [o for o in offers if o["yiaddr"] == "0.0.0.0"]
leased = [o for o in offers if o["yiaddr"] != "0.0.0.0"]
if proxy and leased:
    subprocess.run(["ip", "addr", "add", leased[0]["yiaddr"] + "/24", "dev", ifname], check=True)
    r = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    r.bind((leased[0]["yiaddr"], 68 if False else 0))
    r.settimeout(4)
    r.sendto(packet(3, b"efgh", socket.inet_aton(leased[0]["yiaddr"])), (proxy[0]["server"], 4011))
    ack = read(r.recv(1500))
print(json.dumps({"offers": offers, "ack": ack}))
"""


async def pxe_client(ns: str, ifname: str, pxe: bool, ipxe: bool) -> dict[str, object]:
    code, out = await run_in(
        ns, sys.executable, "-c", CLIENT, ifname, str(int(pxe)), str(int(ipxe)), timeout=30
    )
    assert code == 0, out.decode()
    result: dict[str, object] = json.loads(out)
    return result


async def test_proxy_dhcp_beside_another_server(tmp_path: Path) -> None:
    with boot_network() as net:
        udhcpd = await net.site_dhcp(tmp_path)
        proxy = await asyncio.create_subprocess_exec(
            "ip", "netns", "exec", net.server, sys.executable, "-m", "hwfleet.boot.proxydhcp",
            "--interface", SERVER_IF, "--server-ip", SERVER_IP, "--http-base", HTTP,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
        try:
            assert proxy.stdout is not None
            ready = await asyncio.wait_for(proxy.stdout.readline(), 30)
            assert b"proxyDHCP ready" in ready, ready
            pxe_ns = net.add_client()
            got = await pxe_client(pxe_ns, net.clients[pxe_ns][0], pxe=True, ipxe=False)
            offers = list(got["offers"])  # type: ignore[call-overload]
            by_server = {o["server"]: o for o in offers}
            assert set(by_server) == {SITE_DHCP, SERVER_IP}, offers
            assert by_server[SITE_DHCP]["yiaddr"].startswith(f"{SUBNET}.1")
            proxied = by_server[SERVER_IP]
            assert proxied["yiaddr"] == "0.0.0.0" and proxied["type"] == 2  # an OFFER, no address
            assert proxied["siaddr"] == SERVER_IP and proxied["file"] == "undionly.kpxe"
            assert proxied["vendor"] == "PXEClient"
            ack = got["ack"]
            assert isinstance(ack, dict) and ack["type"] == 5 and ack["file"] == "undionly.kpxe"

            ipxe_ns = net.add_client()
            got = await pxe_client(ipxe_ns, net.clients[ipxe_ns][0], pxe=True, ipxe=True)
            files = {o["file"] for o in got["offers"] if o["server"] == SERVER_IP}  # type: ignore[attr-defined]
            assert files == {f"{HTTP}/boot/ipxe"}

            # Not a PXE client: only the site's server answers it.
            plain = net.add_client()
            got = await pxe_client(plain, net.clients[plain][0], pxe=False, ipxe=False)
            servers = [o["server"] for o in got["offers"]]  # type: ignore[attr-defined]
            assert servers == [SITE_DHCP], got
        finally:
            for proc in (proxy, udhcpd):
                proc.terminate()
                await asyncio.wait_for(proc.wait(), 10)
