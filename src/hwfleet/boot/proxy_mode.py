"""proxyDHCP mode (``--dhcp-proxy``): hwfleet answers PXE boot options, another server addresses.

Like dnsmasq's proxy mode, no Kea runs: hwfleet's responder (proxydhcp) answers PXE clients
with where to boot and never with an address, so it cannot compete with the site's DHCP
server. Having no lease table of its own, hwfleet learns which address a machine holds from
the machine: a PXE client (iPXE always, so every machine before its boot script) asks the
proxy on port 4011 from the address the site's server gave it, with its MAC in ``chaddr``,
on the boot interface only. These sightings stand in for leases: for the discovery token
check (a script only to the address seen for that MAC), for ``dhcp.bind.success`` events
and discovered nodes, and for the read-only ``dhcp`` RPCs. A sighting lasts
``dhcp_lease_time``. The methods that change addresses (pin, unpin, remove) are refused
with code ``unsupported``: the addresses are the site server's to give.
"""

from __future__ import annotations

import asyncio
import logging
import time

from hwfleet.boot.dhcp_rpc import EXCHANGE, DhcpRpc
from hwfleet.boot.kea_config import KeaParams, Pin
from hwfleet.boot.lease_watch import LeaseWatcher
from hwfleet.boot.leases import Lease
from hwfleet.boot.proxydhcp import ProxyDhcp, serve
from hwfleet.bus.base import RpcError, RpcHandler
from hwfleet.types import JsonObject

log = logging.getLogger(__name__)

#: The ``dhcp`` methods that would change who holds an address: not hwfleet's to do here.
REFUSED = ("removeLease", "removeLeaseByIp", "pinMac", "pinIp", "unpinMac", "unpinIp")


class Sightings:
    """MAC → the address it last asked the proxy from, each for ``ttl`` seconds."""

    def __init__(self, ttl: int) -> None:
        self.ttl = ttl
        self._by_mac: dict[str, Lease] = {}

    def seen(self, mac: str, ip: str) -> Lease:
        # Another MAC seen at this address has lost it (the site server gave it anew).
        for other in [m for m, x in self._by_mac.items() if x.ip == ip and m != mac]:
            del self._by_mac[other]
        lease = Lease(mac, ip, int(time.time()), self.ttl, "", "active")
        self._by_mac[mac] = lease
        return lease

    def _live(self) -> list[Lease]:
        now = time.time()
        self._by_mac = {m: x for m, x in self._by_mac.items() if x.cltt + x.valid_lifetime > now}
        return list(self._by_mac.values())

    async def all(self) -> list[Lease]:
        return sorted(self._live(), key=lambda x: tuple(int(p) for p in x.ip.split(".")))

    async def by_mac(self, mac: str) -> list[Lease]:
        return [x for x in self._live() if x.mac == mac]

    async def by_ip(self, ip: str) -> Lease | None:
        return next((x for x in self._live() if x.ip == ip), None)

    async def delete(self, ip: str) -> bool:
        return False  # the lease is the site server's; nothing here can free it


class ProxyDhcpRpc(DhcpRpc):
    """The nine methods over sightings: lookups answer, changes are refused."""

    async def pins(self) -> list[Pin]:
        return []  # no reservations: hwfleet gives no addresses in proxy mode

    async def _pin_of_mac(self, mac: str) -> str | None:
        return None

    def handlers(self) -> dict[str, RpcHandler]:
        handlers = super().handlers()
        for name in REFUSED:
            handlers[name] = self._refuser(name)
        return handlers

    @staticmethod
    def _refuser(method: str) -> RpcHandler:
        async def refuse(params: JsonObject) -> JsonObject:
            raise RpcError(
                EXCHANGE,
                method,
                "hwfleet runs as proxyDHCP (--dhcp-proxy): addresses come from the site's DHCP "
                "server, so pins and lease removals are made there",
                "unsupported",
            )

        return refuse


class ProxyMode:
    """The responder on the boot interface and what it sees."""

    def __init__(self, params: KeaParams, sightings: Sightings, watcher: LeaseWatcher) -> None:
        self.params = params
        self.sightings = sightings
        self._watcher = watcher
        self._listeners: list[ProxyDhcp] = []
        self._pending: set[asyncio.Task[None]] = set()

    @property
    def answered(self) -> int:
        return sum(x.answered for x in self._listeners)

    async def start(self) -> None:
        p = self.params
        self._listeners = await serve(p.interface, p.server_ip, p.http_base, self._seen)
        log.info("proxyDHCP on %s (%s:67 and :4011): boot files only", p.interface, p.server_ip)

    def _seen(self, mac: str, ip: str) -> None:
        lease = self.sightings.seen(mac, ip)
        # The datagram callback cannot await: the bind event (a store write) runs as a task.
        task = asyncio.create_task(self._announce(lease), name="proxydhcp-bind")
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _announce(self, lease: Lease) -> None:
        try:
            await self._watcher.announce(lease)
        except Exception:
            log.exception("could not announce the bind of %s", lease.mac)

    async def close(self) -> None:
        for listener in self._listeners:
            listener.close()
        if self._pending:
            await asyncio.gather(*self._pending, return_exceptions=True)
