"""Runs one discovery role inside a network namespace (``ip netns exec NS python THIS ...``).

Roles, each driven by line commands on stdin and answering one JSON line on stdout:

- ``responder``: an agent's responder on 0.0.0.0:1901 joined to the group on ``--interface``;
  commands ``stats``, ``announce``.
- ``browser``: a browser multicasting on ``--interface`` and listening for announcements;
  commands ``scan SECONDS EXPECT``, ``next SECONDS`` (the next update, or null), ``stats``.
- ``blast``: sends malformed datagrams then valid queries to ``--target`` by unicast,
  multicast and broadcast, and reports the replies (one-shot).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import sys
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from hwfleet.discovery import (
    DEFAULT_GROUP,
    DEFAULT_PORT,
    AdvertBody,
    BadPacketError,
    DeviceMetadata,
    DiscoveryBrowser,
    DiscoveryResponder,
    build_query,
    parse,
)
from hwfleet.discovery.packets import HEADER, MAGIC
from hwfleet.discovery.udp import interface_index, multicast_request


def emit(doc: Any) -> None:
    sys.stdout.write(json.dumps(doc) + "\n")
    sys.stdout.flush()


async def commands() -> Any:
    while line := await asyncio.to_thread(sys.stdin.readline):
        yield line.split()


async def responder(args: argparse.Namespace) -> None:
    key = Ed25519PrivateKey.from_private_bytes(bytes.fromhex(args.key))
    meta = DeviceMetadata(
        uuid=args.uuid,
        name=args.name,
        serial=args.serial,
        model_id="netns-model",
        version="9.9",
        ipaddr=args.address,
        endpoint=(args.address, 12345),
    )
    async with DiscoveryResponder(lambda: meta, interface=args.interface, signing_key=key) as r:
        emit({"ready": True})
        async for cmd in commands():
            if cmd == ["stats"]:
                emit(r.stats())
            elif cmd == ["announce"]:
                emit({"sent": await r.announce()})


async def browser(args: argparse.Namespace) -> None:
    known = {k: bytes.fromhex(v) for k, v in (item.split("=") for item in args.known)}
    async with DiscoveryBrowser(
        interface=args.interface,
        listen=("0.0.0.0", DEFAULT_PORT),
        known_keys=known.get,
        retry_interval=0.3,
    ) as b:
        updates = b.updates()
        emit({"ready": True})
        async for cmd in commands():
            if cmd[0] == "scan":
                found = await b.scan(float(cmd[1]), expect=int(cmd[2]))
                emit([d.to_json() for d in found])
            elif cmd[0] == "next":
                try:
                    async with asyncio.timeout(float(cmd[1])):
                        update = await anext(updates)
                    emit({"event": update.event, **update.to_json()})
                except TimeoutError:
                    emit(None)
            elif cmd == ["stats"]:
                emit(b.stats())


def garbage() -> list[bytes]:
    body = b'{"nonce": "' + b"ab" * 16 + b'", "ts": 1}'
    return [
        b"",
        b"\xff" * 7,
        b"HWFD\x01\x01",
        bytes(9000),  # oversized (fragmented on the wire, reassembled, then refused)
        HEADER.pack(MAGIC, 2, 1, 0, 0, len(body)) + body + bytes(1200),  # unknown version
        HEADER.pack(MAGIC, 1, 1, 0, 0, 800) + body,  # truncated body
        HEADER.pack(MAGIC, 1, 1, 0, 0, len(body)) + body,  # query without padding
        HEADER.pack(MAGIC, 1, 1, 0, 0, 5) + b"{nope" + bytes(1200),  # not JSON
    ]


async def blast(args: argparse.Namespace) -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, args.interface.encode())
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
    mreq = multicast_request("0.0.0.0", interface_index(args.interface))
    sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, mreq)
    sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 1)
    sock.bind(("0.0.0.0", 0))
    sock.settimeout(3.0)
    targets = {
        "unicast": (args.target, DEFAULT_PORT),
        "multicast": (DEFAULT_GROUP, DEFAULT_PORT),
        "broadcast": (args.broadcast, DEFAULT_PORT),
    }
    for target in targets.values():
        for data in garbage():
            sock.sendto(data, target)
    report: dict[str, Any] = {}
    for how, target in targets.items():
        query, nonce = build_query()
        sock.sendto(query, target)
        expected = 1 if how == "unicast" else args.agents
        replies: list[dict[str, Any]] = []
        while len(replies) < expected:
            data, source = await asyncio.to_thread(sock.recvfrom, 65535)
            try:
                packet = parse(data)
                ok = isinstance(packet.body, AdvertBody) and packet.body.nonce == nonce
            except BadPacketError:
                ok = False
            replies.append({"ok": ok, "size": len(data), "query": len(query), "from": source[0]})
        report[how] = replies
    sock.close()
    emit(report)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("role", choices=["responder", "browser", "blast"])
    parser.add_argument("--interface", required=True)
    parser.add_argument("--uuid", default="")
    parser.add_argument("--key", default="")
    parser.add_argument("--name", default="agent")
    parser.add_argument("--serial", type=int, default=0)
    parser.add_argument("--address", default="")
    parser.add_argument("--known", nargs="*", default=[])
    parser.add_argument("--target", default="")
    parser.add_argument("--broadcast", default="255.255.255.255")
    parser.add_argument("--agents", type=int, default=1, help="how many answer a group query")
    args = parser.parse_args()
    role = {"responder": responder, "browser": browser, "blast": blast}[args.role]
    asyncio.run(role(args))


if __name__ == "__main__":
    main()
