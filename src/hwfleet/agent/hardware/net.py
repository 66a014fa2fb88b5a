"""Network interfaces from ``/sys/class/net``, with IPv4 addresses from one netlink dump.

Only physical NICs are reported: interfaces backed by a device
(``/sys/class/net/<if>/device`` exists: PCI, USB, virtio, SoC). A burn-in scan
compares every reported MAC against the MES, so a bridge, bond, VLAN, veth,
tun/tap, ``ifb`` or ``docker0`` would score ``"0"`` and fail a good unit. Each
interface left out is named in :attr:`NicReport.excluded` with the reason:
its rtnetlink kind (``bridge``, ``bond``, ``vlan``, ``veth``, ``ifb``,
``dummy``, ``tun``…), ``loopback``, ``no-mac`` (a device-backed link without a
link-layer address, e.g. CAN), or ``virtual`` when nothing says more.

A NIC's MAC is its permanent one (``ethtool -P``): an enslaved bond member
shows the bond's address in sysfs, but the MES lists the one it shipped with.
"""

from __future__ import annotations

import os
import socket
import struct
from collections.abc import Callable, Mapping
from pathlib import Path

from hwfleet.agent.hardware import _netlink
from hwfleet.agent.hardware._sysfs import (
    link_name,
    list_dir,
    read_flag,
    read_int,
    read_str,
    under,
)
from hwfleet.agent.hardware.pci import pci_address_of
from hwfleet.protocol.inventory import ExcludedNic, Nic, NicReport

_ARPHRD_LOOPBACK = 772
_RTM_GETADDR = 22
_RTM_NEWADDR = 20
_IFA_ADDRESS = 1
_IFA_LOCAL = 2
_IFF_TAP = 0x0002
_NO_MAC = ("", "00:00:00:00:00:00")

#: Reads an interface's permanent MAC in the running namespace (None: it has none).
PermanentMac = Callable[[str], str | None]


def list_nics(root: Path | str = "/", ipv4: Mapping[str, list[str]] | None = None) -> list[Nic]:
    """The physical NICs sorted by name; ``ipv4`` maps interface names to their addresses."""
    return scan_nics(root, ipv4).interfaces


def scan_nics(
    root: Path | str = "/",
    ipv4: Mapping[str, list[str]] | None = None,
    *,
    kinds: Mapping[str, str] | None = None,
    permanent_mac: PermanentMac | None = None,
) -> NicReport:
    """Physical NICs and the interfaces left out (with why), both sorted by name.

    ``kinds`` (rtnetlink kinds) and ``permanent_mac`` come from the running
    kernel; without them (a fake tree) sysfs alone decides.
    """
    base = under(root, "/sys/class/net")
    report = NicReport()
    for name in list_dir(base):
        path = os.path.join(base, name)
        mac = (read_str(os.path.join(path, "address")) or "").lower()
        reason = _exclusion(name, path, mac, kinds or {})
        if reason is not None:
            report.excluded.append(ExcludedNic(name=name, reason=reason))
            continue
        device = os.path.join(path, "device")
        speed = read_int(os.path.join(path, "speed"))
        report.interfaces.append(
            Nic(
                name=name,
                mac=_permanent(name, path, permanent_mac) or mac,
                pci=pci_address_of(device),
                driver=link_name(os.path.join(device, "driver")),
                # Link-down interfaces report -1 (or EINVAL): unknown, not slow.
                speed_mbps=speed if speed is not None and speed > 0 else None,
                carrier=read_flag(os.path.join(path, "carrier")),
                mtu=read_int(os.path.join(path, "mtu")),
                ipv4=list((ipv4 or {}).get(name, [])),
            )
        )
    return report


def _exclusion(name: str, path: str, mac: str, kinds: Mapping[str, str]) -> str | None:
    """Why ``name`` is not a physical NIC, or None when it is one."""
    if name == "lo" or read_int(os.path.join(path, "type")) == _ARPHRD_LOOPBACK:
        return "loopback"
    if not os.path.exists(os.path.join(path, "device")):
        return _virtual_kind(name, path, kinds)
    if mac in _NO_MAC:
        return "no-mac"
    return None


def _virtual_kind(name: str, path: str, kinds: Mapping[str, str]) -> str:
    kind = kinds.get(name)
    if kind == "tun" or (kind is None and os.path.exists(os.path.join(path, "tun_flags"))):
        flags = read_int(os.path.join(path, "tun_flags"), 16)
        return "tap" if flags is not None and flags & _IFF_TAP else "tun"
    if kind:
        return kind
    # No rtnetlink answer (a fake tree, an old kernel): what sysfs shows.
    if os.path.isdir(os.path.join(path, "bridge")):
        return "bridge"
    if os.path.isdir(os.path.join(path, "bonding")):
        return "bond"
    for line in (read_str(os.path.join(path, "uevent")) or "").splitlines():
        if line.startswith("DEVTYPE=") and line[8:]:
            return line[8:]
    return "virtual"


def _permanent(name: str, path: str, live: PermanentMac | None) -> str | None:
    """``ethtool -P``, else the bonding driver's record of a member's own MAC."""
    found = (live(name) if live is not None else None) or ""
    if found.lower() in _NO_MAC:
        found = read_str(os.path.join(path, "bonding_slave", "perm_hwaddr")) or ""
    found = found.lower()
    return None if found in _NO_MAC else found


def ipv4_addresses() -> dict[str, list[str]]:
    """This namespace's IPv4 addresses by interface name (RTM_GETADDR dump; no subprocess)."""
    by_index: dict[int, list[str]] = {}
    header = struct.pack("=BBBBL", socket.AF_INET, 0, 0, 0, 0)
    for message, payload in _netlink.dump(_RTM_GETADDR, header):
        if message != _RTM_NEWADDR or len(payload) < len(header):
            continue
        family, _, _, _, index = struct.unpack_from("=BBBBL", payload)
        if family == socket.AF_INET:
            address = _ipv4_attribute(payload[len(header) :])
            if address:
                by_index.setdefault(index, []).append(address)
    result: dict[str, list[str]] = {}
    for index, addresses in by_index.items():
        try:
            result[socket.if_indextoname(index)] = addresses
        except OSError:
            continue
    return result


def _ipv4_attribute(attributes: bytes) -> str | None:
    # IFA_LOCAL is the interface's own address; IFA_ADDRESS is the peer on point-to-point links.
    found: dict[int, str] = {}
    for kind, value in _netlink.attributes(attributes):
        if kind in (_IFA_ADDRESS, _IFA_LOCAL) and len(value) == 4:
            found[kind] = socket.inet_ntoa(value)
    return found.get(_IFA_LOCAL) or found.get(_IFA_ADDRESS)
