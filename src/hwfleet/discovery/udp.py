"""UDP plumbing shared by responder and browser: the datagram endpoint and multicast options."""

from __future__ import annotations

import asyncio
import socket
import struct
from collections import Counter
from collections.abc import Callable

from hwfleet.types import DISCOVERY_GROUP, DISCOVERY_PORT

DEFAULT_PORT = DISCOVERY_PORT
DEFAULT_GROUP = DISCOVERY_GROUP


def multicast_request(group: str, ifindex: int) -> bytes:
    """``struct ip_mreqn`` naming the group and the interface (0: the kernel's choice)."""
    return struct.pack("4s4si", socket.inet_aton(group), socket.inet_aton("0.0.0.0"), ifindex)


def interface_index(interface: str) -> int:
    """The interface's index, or ``ValueError`` naming an interface that does not exist."""
    try:
        return socket.if_nametoindex(interface)
    except OSError:
        raise ValueError(f"no network interface named {interface!r}") from None


class DatagramEndpoint(asyncio.DatagramProtocol):
    """Hands every datagram to a callback; counts socket errors instead of dying on them."""

    def __init__(self, on_datagram: Callable[[bytes, tuple[str, int]], None]) -> None:
        self.on_datagram = on_datagram
        self.counters: Counter[str] = Counter()

    def datagram_received(self, data: bytes, addr: tuple[str | object, ...]) -> None:
        self.on_datagram(data, (str(addr[0]), int(str(addr[1]))))

    def error_received(self, exc: Exception) -> None:
        # ICMP errors for earlier sends (port unreachable) surface here; keep serving.
        self.counters["socket_error"] += 1
