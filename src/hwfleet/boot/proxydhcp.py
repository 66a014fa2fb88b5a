"""A proxyDHCP responder (PXE spec 2.1): boot file information, never an address.

For networks where another DHCP server hands out addresses (``--dhcp-proxy``): a PXE ROM
broadcasts its DHCPDISCOVER with vendor class ``PXEClient``; the site's DHCP server offers an
address, and this responder offers, from the same broadcast, only where to boot
(``siaddr``, ``file``, option 60 ``PXEClient``, option 43 with PXE discovery control 8:
"boot the file named here"). A client that then asks on port 4011 (its DHCPREQUEST to the
proxy) gets the same answer as a DHCPACK. Clients without ``PXEClient`` get nothing: this
server never competes with the real one.

The boot file follows Kea's classes in hwfleet (kea_config): iPXE (user class ``iPXE``) gets
the HTTP chain URL, a UEFI ROM (option 93 = 7 or 9) ``ipxe.efi``, a BIOS ROM ``undionly.kpxe``.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import socket
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import cast

log = logging.getLogger(__name__)

MAGIC = b"\x63\x82\x53\x63"
DISCOVER, OFFER, REQUEST, ACK = 1, 2, 3, 5
#: op .. chaddr (236 bytes) before the magic cookie.
_HEADER = struct.Struct("!BBBB4sHH4s4s4s4s16s64s128s")
#: A DHCP message bigger than this is no boot ROM's.
MAX_PACKET = 1500
#: Where proxyDHCP requests come (PXE spec: the client's DHCPREQUEST to the proxy).
PROXY_PORT = 4011

#: Told (MAC, address) when a PXE client takes an address (its broadcast DHCPREQUEST to the
#: site's server) or asks the proxy from the address it was given (port 4011).
Seen = Callable[[str, str], None]


class PacketError(ValueError):
    """Not a DHCP message this responder can read."""


@dataclass(frozen=True, slots=True)
class Request:
    op: int
    xid: bytes
    flags: int
    ciaddr: str
    chaddr: bytes
    options: dict[int, bytes]

    @property
    def kind(self) -> int:
        value = self.options.get(53, b"")
        return value[0] if value else 0

    @property
    def pxe(self) -> bool:
        return self.options.get(60, b"").startswith(b"PXEClient")

    @property
    def mac(self) -> str:
        return ":".join(f"{b:02x}" for b in self.chaddr[:6])


def parse(data: bytes) -> Request:
    if len(data) < _HEADER.size + 4 or data[_HEADER.size : _HEADER.size + 4] != MAGIC:
        raise PacketError("not a DHCP message (short, or no magic cookie)")
    op, htype, hlen, _hops, xid, _secs, flags, ciaddr, *_rest = _HEADER.unpack_from(data)
    if htype != 1 or hlen != 6:
        raise PacketError("only Ethernet clients")
    options: dict[int, bytes] = {}
    i = _HEADER.size + 4
    while i < len(data):
        code = data[i]
        if code == 255:
            break
        if code == 0:
            i += 1
            continue
        if i + 1 >= len(data) or i + 2 + data[i + 1] > len(data):
            raise PacketError("an option runs past the end of the message")
        options[code] = data[i + 2 : i + 2 + data[i + 1]]
        i += 2 + data[i + 1]
    return Request(op, xid, flags, socket.inet_ntoa(ciaddr), _rest[3], options)


def boot_file(request: Request, http_base: str) -> str:
    if request.options.get(77, b"") == b"iPXE":
        return f"{http_base.rstrip('/')}/boot/ipxe"
    arch = request.options.get(93, b"\x00\x00")
    return "ipxe.efi" if int.from_bytes(arch[:2], "big") in (7, 9) else "undionly.kpxe"


def answer(request: Request, kind: int, server_ip: str, http_base: str) -> bytes:
    """The OFFER/ACK: no address (yiaddr 0), the boot server and file."""
    file = boot_file(request, http_base).encode()
    if len(file) > 127:
        raise PacketError("boot file name longer than the 128-byte field")
    server = socket.inet_aton(server_ip)
    header = _HEADER.pack(
        2, 1, 6, 0, request.xid, 0, request.flags, bytes(4), bytes(4), server, bytes(4),
        request.chaddr, bytes(64), file,
    )  # fmt: skip
    options = [(53, bytes([kind])), (54, server), (60, b"PXEClient"), (43, b"\x06\x01\x08\xff")]
    if 97 in request.options:  # the client's UUID, echoed as the spec asks
        options.append((97, request.options[97]))
    body = b"".join(bytes([code, len(value)]) + value for code, value in options)
    return header + MAGIC + body + b"\xff"


class ProxyDhcp(asyncio.DatagramProtocol):
    def __init__(
        self, server_ip: str, http_base: str, port67: bool, on_seen: Seen | None = None
    ) -> None:
        self.server_ip = server_ip
        self.http_base = http_base
        self.port67 = port67
        self.on_seen = on_seen
        self.transport: asyncio.DatagramTransport | None = None
        self.answered = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        try:
            request = parse(data[:MAX_PACKET])
        except PacketError as exc:
            log.debug("ignored a datagram from %s: %s", addr[0], exc)
            return
        if request.op != 1 or not request.pxe:
            return  # not a PXE client: the site's DHCP server answers it alone
        if self.port67 and request.kind == REQUEST:
            # The client taking the site server's offer (broadcast, so it reaches us too):
            # the address it asks for (option 50, or ciaddr) is the one it is about to hold.
            # Debian's iPXE (1.0.0+git-20190125) boots from the proxy's offer and never asks
            # on 4011, so without this hwfleet would not know its address.
            asked = request.options.get(50, b"")
            self._seen(request, socket.inet_ntoa(asked) if len(asked) == 4 else request.ciaddr)
            return
        if self.port67 and request.kind == DISCOVER:
            reply, to = answer(request, OFFER, self.server_ip, self.http_base), ("<broadcast>", 68)
        elif not self.port67 and request.kind == REQUEST:
            reply, to = answer(request, ACK, self.server_ip, self.http_base), addr
            self._seen(request, addr[0])
        else:
            return
        assert self.transport is not None
        self.transport.sendto(reply, to)
        self.answered += 1
        log.info("proxyDHCP: boot file for %s (%s)", request.mac, boot_file(request, ""))

    def _seen(self, request: Request, source: str) -> None:
        # The request came from the address the site's server gave this MAC (ciaddr when
        # the client sent it from 0.0.0.0): hwfleet's only view of who holds which address.
        address = source if source != "0.0.0.0" else request.ciaddr
        if self.on_seen is not None and address != "0.0.0.0":
            self.on_seen(request.mac, address)


def _socket(interface: str, host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
        # Bound to the boot interface: answers leave only there, and a request routed in
        # from elsewhere cannot claim an address on the boot network.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, interface.encode())
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise OSError(
            exc.errno, f"proxyDHCP cannot listen on {host}:{port} on {interface}: {exc.strerror}"
        ) from None
    return sock


async def serve(
    interface: str, server_ip: str, http_base: str, on_seen: Seen | None = None
) -> list[ProxyDhcp]:
    """Listen on UDP 67 and on ``server_ip``:4011, both bound to ``interface``.

    Returns the two listeners; ``close`` them to stop."""
    loop = asyncio.get_running_loop()
    first_sock = _socket(interface, "0.0.0.0", 67)
    try:
        second_sock = _socket(interface, server_ip, PROXY_PORT)
    except OSError:
        first_sock.close()
        raise
    _, first = await loop.create_datagram_endpoint(
        lambda: ProxyDhcp(server_ip, http_base, True, on_seen), sock=first_sock
    )
    _, second = await loop.create_datagram_endpoint(
        lambda: ProxyDhcp(server_ip, http_base, False, on_seen), sock=second_sock
    )
    return [first, second]


async def _main(args: argparse.Namespace) -> None:
    listeners = await serve(args.interface, args.server_ip, args.http_base)
    print("proxyDHCP ready", flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        for listener in listeners:
            listener.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--interface", required=True)
    parser.add_argument("--server-ip", required=True)
    parser.add_argument("--http-base", required=True)
    logging.basicConfig(level=logging.INFO)
    asyncio.run(_main(parser.parse_args()))


if __name__ == "__main__":
    main()
