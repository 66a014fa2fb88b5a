"""Kea's leases as hwfleet shows them, read through the ``lease_cmds`` hook."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from hwfleet.boot.kea_control import KeaControl
from hwfleet.protocol.mac import normalize_mac

#: Kea's lease states (0 default, 1 declined, 2 expired-reclaimed).
_STATES = {0: "active", 1: "declined", 2: "expired"}


@dataclass(frozen=True, slots=True)
class Lease:
    mac: str
    ip: str
    cltt: int  # client last transmission time (unix seconds)
    valid_lifetime: int
    hostname: str
    state: str

    @property
    def expires(self) -> datetime:
        return datetime.fromtimestamp(self.cltt + self.valid_lifetime, UTC)

    def to_json(self, pinned: bool = False) -> dict[str, Any]:
        return {
            "mac": self.mac,
            "ip": self.ip,
            "expires": self.expires.isoformat(),
            "hostname": self.hostname,
            "state": self.state,
            "pinned": pinned,
        }


def lease_of(doc: dict[str, Any]) -> Lease | None:
    """A lease from Kea's JSON; None for one without a usable hardware address."""
    try:
        mac = normalize_mac(doc.get("hw-address", ""))
    except ValueError:
        return None
    return Lease(
        mac=mac,
        ip=str(doc["ip-address"]),
        cltt=int(doc.get("cltt", 0)),
        valid_lifetime=int(doc.get("valid-lft", 0)),
        hostname=str(doc.get("hostname", "")),
        state=_STATES.get(int(doc.get("state", 0)), "unknown"),
    )


class LeaseSource(Protocol):
    """Who holds which address: Kea's lease table, or what proxyDHCP saw (proxy_mode)."""

    async def all(self) -> list[Lease]: ...

    async def by_mac(self, mac: str) -> list[Lease]: ...

    async def by_ip(self, ip: str) -> Lease | None: ...

    async def delete(self, ip: str) -> bool: ...


class LeaseTable:
    """Queries and deletes on Kea's lease database."""

    def __init__(self, control: KeaControl) -> None:
        self.control = control

    async def all(self) -> list[Lease]:
        args = await self.control.command("lease4-get-all", empty_ok=True)
        leases = (lease_of(doc) for doc in args.get("leases", []))
        return sorted((x for x in leases if x is not None), key=lambda x: _ip_key(x.ip))

    async def by_mac(self, mac: str) -> list[Lease]:
        args = await self.control.command(
            "lease4-get-by-hw-address", {"hw-address": mac}, empty_ok=True
        )
        leases = (lease_of(doc) for doc in args.get("leases", []))
        return [x for x in leases if x is not None]

    async def by_ip(self, ip: str) -> Lease | None:
        args = await self.control.command("lease4-get", {"ip-address": ip}, empty_ok=True)
        return lease_of(args) if args else None

    async def delete(self, ip: str) -> bool:
        reply = await self.control.raw("lease4-del", {"ip-address": ip})
        return reply.get("result") == 0


def _ip_key(ip: str) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in ip.split("."))
    except ValueError:
        return (999,)
