"""What the kernel says about a network interface beyond sysfs: its kind and permanent MAC.

- The **kind** is rtnetlink's ``IFLA_INFO_KIND`` (``bridge``, ``bond``, ``vlan``,
  ``veth``, ``ifb``, ``dummy``, ``tun``, ``macvlan``…), the name ``ip -d link``
  prints; one ``RTM_GETLINK`` dump answers for every interface.
- The **permanent MAC** is what ``ethtool -P`` prints: the ``ETHTOOL_GPERMADDR``
  ioctl returns the address the hardware came with. It matters because the
  current address changes: a NIC enslaved to a bond takes the bond's MAC, and
  the MES knows the one on the label. A device without one answers zeros
  (virtual links) and the caller falls back to the current address.

Both read the network namespace the process runs in.
"""

from __future__ import annotations

import array
import fcntl
import socket
import struct

from hwfleet.agent.hardware import _netlink

_RTM_GETLINK = 18
_RTM_NEWLINK = 16
_IFLA_IFNAME = 3
_IFLA_LINKINFO = 18
_IFLA_INFO_KIND = 1
_SIOCETHTOOL = 0x8946
_ETHTOOL_GPERMADDR = 0x20
_MAX_ADDR_LEN = 32
_IFNAMSIZ = 16
_IFREQ_SIZE = 40


def link_kinds() -> dict[str, str]:
    """``{interface: kind}`` for every interface that has one (physical NICs have none)."""
    header = struct.pack("=BxHiII", socket.AF_UNSPEC, 0, 0, 0, 0)
    kinds: dict[str, str] = {}
    for message, payload in _netlink.dump(_RTM_GETLINK, header):
        if message != _RTM_NEWLINK or len(payload) < len(header):
            continue
        name = kind = None
        for attribute, value in _netlink.attributes(payload[len(header) :]):
            if attribute == _IFLA_IFNAME:
                name = _c_string(value)
            elif attribute == _IFLA_LINKINFO:
                for nested, inner in _netlink.attributes(value):
                    if nested == _IFLA_INFO_KIND:
                        kind = _c_string(inner)
        if name and kind:
            kinds[name] = kind
    return kinds


def permanent_mac(name: str) -> str | None:
    """The interface's permanent MAC (``ethtool -P``), or None when it has none or cannot say."""
    encoded = name.encode("utf-8", "surrogateescape")
    if not encoded or len(encoded) >= _IFNAMSIZ:
        return None
    # The ethtool request the kernel fills in. An array, not ctypes: its buffer_info() gives
    # the address just the same, and ctypes would stay resident in every agent (issue 18).
    buffer = array.array("B", struct.pack("=II", _ETHTOOL_GPERMADDR, _MAX_ADDR_LEN))
    buffer.frombytes(bytes(_MAX_ADDR_LEN))
    # struct ifreq: the name, then (in the union) a pointer to the ethtool request.
    request = struct.pack(f"@{_IFNAMSIZ}sP", encoded, buffer.buffer_info()[0])
    request = request.ljust(_IFREQ_SIZE, b"\0")
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            fcntl.ioctl(sock.fileno(), _SIOCETHTOOL, request)
    except OSError:
        return None  # no such interface, or a driver without ethtool support
    raw = buffer.tobytes()
    size = struct.unpack_from("=I", raw, 4)[0]
    address = raw[8 : 8 + min(size, _MAX_ADDR_LEN)]
    if size == 0 or not any(address):
        return None
    return ":".join(f"{byte:02x}" for byte in address)


def _c_string(value: bytes) -> str:
    return value.split(b"\0", 1)[0].decode("utf-8", "replace")
