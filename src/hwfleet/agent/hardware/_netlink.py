"""One rtnetlink dump (``RTM_GETADDR``, ``RTM_GETLINK``): request it, walk the answers.

Reads the namespace the process runs in, with no subprocess: the agent's
inventory must not depend on iproute2 being installed.
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Iterator

_NLMSG_DONE = 3
_NLMSG_ERROR = 2
_NLM_F_REQUEST_DUMP = 0x001 | 0x300
_HEADER = 16
#: A dump is a handful of datagrams per hundred interfaces; this bounds a misbehaving kernel.
_MAX_DATAGRAMS = 10_000


def dump(kind: int, body: bytes) -> Iterator[tuple[int, bytes]]:
    """``(message type, payload)`` of every message answering a dump request.

    ``body`` is the family header (``ifaddrmsg``, ``ifinfomsg``). An unusable
    socket or a failed receive ends the iteration early: callers report what
    they got, as every sysfs reader does.
    """
    try:
        sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)
    except OSError:
        return
    with sock:
        sock.settimeout(2.0)
        request = struct.pack("=LHHLL", _HEADER + len(body), kind, _NLM_F_REQUEST_DUMP, 1, 0)
        try:
            sock.sendto(request + body, (0, 0))
            for _ in range(_MAX_DATAGRAMS):
                data = sock.recv(65536)
                offset = 0
                while offset + _HEADER <= len(data):
                    length, message = struct.unpack_from("=LH", data, offset)
                    if length < _HEADER or message in (_NLMSG_DONE, _NLMSG_ERROR):
                        return
                    yield message, data[offset + _HEADER : offset + length]
                    offset += (length + 3) & ~3
        except OSError:
            return


def attributes(data: bytes) -> Iterator[tuple[int, bytes]]:
    """``(type, value)`` of each route attribute in ``data`` (nested flag bits cleared)."""
    offset = 0
    while offset + 4 <= len(data):
        length, kind = struct.unpack_from("=HH", data, offset)
        if length < 4:
            return
        yield kind & 0x3FFF, data[offset + 4 : offset + length]
        offset += (length + 3) & ~3
