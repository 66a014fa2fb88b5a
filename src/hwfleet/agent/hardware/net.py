"""Network interfaces from ``/sys/class/net``, with IPv4 addresses from one netlink dump.

Every interface except loopback is listed; virtual ones (bridges, veths,
``ifb``) simply have no ``pci``. Interfaces without a link-layer address
(``tun``, WireGuard) are skipped: they have no MAC to identify a machine by.
"""

from __future__ import annotations

import os
import socket
import struct
from collections.abc import Mapping
from pathlib import Path

from hwfleet.agent.hardware._sysfs import link_name, list_dir, read_flag, read_int, read_str, under
from hwfleet.agent.hardware.pci import pci_address_of
from hwfleet.protocol.inventory import Nic

_ARPHRD_LOOPBACK = 772
_RTM_GETADDR = 22
_RTM_NEWADDR = 20
_NLMSG_DONE = 3
_NLMSG_ERROR = 2
_NLM_F_REQUEST_DUMP = 0x001 | 0x300
_IFA_ADDRESS = 1
_IFA_LOCAL = 2


def list_nics(root: Path | str = "/", ipv4: Mapping[str, list[str]] | None = None) -> list[Nic]:
    """Interfaces sorted by name; ``ipv4`` maps interface names to their addresses."""
    base = under(root, "/sys/class/net")
    nics = []
    for name in list_dir(base):
        path = os.path.join(base, name)
        if name == "lo" or read_int(os.path.join(path, "type")) == _ARPHRD_LOOPBACK:
            continue
        mac = read_str(os.path.join(path, "address"))
        if not mac or mac == "00:00:00:00:00:00":
            continue
        device = os.path.join(path, "device")
        speed = read_int(os.path.join(path, "speed"))
        nics.append(
            Nic(
                name=name,
                mac=mac.lower(),
                pci=pci_address_of(device),
                driver=link_name(os.path.join(device, "driver")),
                # Virtual and link-down interfaces report -1 (or EINVAL): unknown, not slow.
                speed_mbps=speed if speed is not None and speed > 0 else None,
                carrier=read_flag(os.path.join(path, "carrier")),
                mtu=read_int(os.path.join(path, "mtu")),
                ipv4=list((ipv4 or {}).get(name, [])),
            )
        )
    return nics


def ipv4_addresses() -> dict[str, list[str]]:
    """This host's IPv4 addresses by interface name (RTM_GETADDR dump; no subprocess)."""
    try:
        sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)
    except OSError:
        return {}
    by_index: dict[int, list[str]] = {}
    with sock:
        sock.settimeout(2.0)
        request = struct.pack("=LHHLL", 24, _RTM_GETADDR, _NLM_F_REQUEST_DUMP, 1, 0)
        request += struct.pack("=BBBBL", socket.AF_INET, 0, 0, 0, 0)
        try:
            sock.sendto(request, (0, 0))
            done = False
            while not done:
                done = _parse_addr_messages(sock.recv(65536), by_index)
        except OSError:
            return {}
    result: dict[str, list[str]] = {}
    for index, addresses in by_index.items():
        try:
            result[socket.if_indextoname(index)] = addresses
        except OSError:
            continue
    return result


def _parse_addr_messages(data: bytes, by_index: dict[int, list[str]]) -> bool:
    """Add the addresses in one netlink datagram; True once the dump is complete."""
    offset = 0
    while offset + 16 <= len(data):
        length, kind = struct.unpack_from("=LH", data, offset)
        if length < 16:
            return True
        if kind in (_NLMSG_DONE, _NLMSG_ERROR):
            return True
        if kind == _RTM_NEWADDR and length >= 24:
            family, _, _, _, index = struct.unpack_from("=BBBBL", data, offset + 16)
            if family == socket.AF_INET:
                address = _ipv4_attribute(data[offset + 24 : offset + length])
                if address:
                    by_index.setdefault(index, []).append(address)
        offset += (length + 3) & ~3
    return False


def _ipv4_attribute(attributes: bytes) -> str | None:
    # IFA_LOCAL is the interface's own address; IFA_ADDRESS is the peer on point-to-point links.
    found: dict[int, str] = {}
    offset = 0
    while offset + 4 <= len(attributes):
        length, kind = struct.unpack_from("=HH", attributes, offset)
        if length < 4:
            break
        if kind in (_IFA_ADDRESS, _IFA_LOCAL) and length == 8:
            found[kind] = socket.inet_ntoa(attributes[offset + 4 : offset + 8])
        offset += (length + 3) & ~3
    return found.get(_IFA_LOCAL) or found.get(_IFA_ADDRESS)
