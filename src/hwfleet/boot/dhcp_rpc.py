"""The nine ``dhcp`` RPC methods of seed 003, answered from Kea's leases and hwfleet's pins.

Params and results (JSON objects; MACs in any common spelling, answered lower-case
colon form):

* ``lookupIpLease {mac}`` → ``{mac, ip|null, expires|null, pinned}``
* ``ipInRange {ip}`` → ``{ip, inRange, range}`` (the dynamic pool)
* ``peekLeaseTable {}`` → ``{leases: [{mac, ip, expires, hostname, state, pinned}], pins}``
* ``removeLease {mac}`` → ``{mac, removed: [ip…]}``
* ``removeLeaseByIp {ip}`` → ``{ip, mac|null, removed}``
* ``pinMac {mac, ip?}`` → ``{mac, ip}``: the MAC keeps ``ip`` (default: its current lease)
* ``unpinMac {mac}`` → ``{mac, ip|null, unpinned}``
* ``pinIp {ip, mac?}`` → ``{mac, ip}``: the lease holding ``ip`` stays with its MAC
* ``unpinIp {ip}`` → ``{mac|null, ip, unpinned}``

A pin that would take an address leased to another MAC, or pinned to one, is refused
with code ``conflict``; malformed params with ``bad_params``; Kea down with ``unavailable``.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from hwfleet.boot.kea_config import DhcpRange, Pin
from hwfleet.boot.kea_control import KeaError, KeaUnreachableError
from hwfleet.boot.leases import LeaseSource
from hwfleet.bus.base import Bus, RpcError, RpcHandler, Subscription
from hwfleet.bus.topology import EXCHANGES
from hwfleet.protocol.mac import normalize_mac
from hwfleet.store import Store
from hwfleet.store.boot_pins import BootPinRepository
from hwfleet.types import JsonObject

EXCHANGE = "dhcp"
#: Seed 003's nine methods, as the bus topology declares them.
METHODS = EXCHANGES[EXCHANGE].rpc_methods

#: Checks a pin against Kea's subnet (ValueError), and pushes the pin set to Kea.
PinCheck = Callable[[Pin], None]
PinApply = Callable[[list[Pin]], Awaitable[None]]


def mac_param(params: JsonObject, key: str = "mac") -> str:
    if key not in params:
        raise ValueError(f"params need {key!r} (a MAC address)")
    return normalize_mac(params[key])


def ip_param(params: JsonObject, key: str = "ip") -> str:
    value = params.get(key)
    if not isinstance(value, str):
        raise ValueError(f"params need {key!r}, an IPv4 address as a string")
    try:
        return str(ipaddress.IPv4Address(value.strip()))
    except ValueError:
        raise ValueError(f"{value[:40]!r} is not an IPv4 address") from None


class DhcpRpc:
    """Serves the ``dhcp`` exchange for one Kea."""

    def __init__(
        self,
        leases: LeaseSource,
        store: Store,
        pool: DhcpRange,
        check_pin: PinCheck,
        apply_pins: PinApply,
    ) -> None:
        self.leases = leases
        self._store = store
        self._pool = pool
        self._check_pin = check_pin
        self._apply_pins = apply_pins

    def handlers(self) -> dict[str, RpcHandler]:
        return {name: self._guarded(getattr(self, name)) for name in METHODS}

    async def call(self, method: str, params: JsonObject) -> JsonObject:
        """A method called in-process (the REST routes), with the bus's error mapping."""
        return await self.handlers()[method](params)

    async def serve(self, bus: Bus) -> Subscription:
        return await bus.serve(EXCHANGE, self.handlers())

    def _guarded(self, handler: RpcHandler) -> RpcHandler:
        name = handler.__name__

        async def call(params: JsonObject) -> JsonObject:
            try:
                return await handler(params)
            except KeaUnreachableError as exc:
                raise RpcError(
                    EXCHANGE, name, f"DHCP server unavailable: {exc}", "unavailable"
                ) from None
            except KeaError as exc:
                raise RpcError(EXCHANGE, name, str(exc), "failed") from None

        return call

    async def pins(self) -> list[Pin]:
        async with self._store.tx(readonly=True) as tx:
            return [Pin(mac, ip) for mac, ip in await BootPinRepository(tx.conn).list()]

    async def _pin_of_mac(self, mac: str) -> str | None:
        async with self._store.tx(readonly=True) as tx:
            return await BootPinRepository(tx.conn).by_mac(mac)

    async def lookupIpLease(self, params: JsonObject) -> JsonObject:
        mac = mac_param(params)
        active = [x for x in await self.leases.by_mac(mac) if x.state == "active"]
        pinned = await self._pin_of_mac(mac)
        if not active:
            return {"mac": mac, "ip": pinned, "expires": None, "pinned": pinned is not None}
        lease = max(active, key=lambda x: x.cltt)
        return {**lease.to_json(lease.ip == pinned), "mac": mac}

    async def ipInRange(self, params: JsonObject) -> JsonObject:
        ip = ip_param(params)
        inside = ipaddress.IPv4Address(ip) in self._pool
        return {"ip": ip, "inRange": inside, "range": str(self._pool)}

    async def peekLeaseTable(self, params: JsonObject) -> JsonObject:
        pins = {pin.mac: pin.ip for pin in await self.pins()}
        leases = [x.to_json(pins.get(x.mac) == x.ip) for x in await self.leases.all()]
        return {"leases": leases, "pins": [{"mac": m, "ip": i} for m, i in pins.items()]}

    async def removeLease(self, params: JsonObject) -> JsonObject:
        mac = mac_param(params)
        removed = [x.ip for x in await self.leases.by_mac(mac) if await self.leases.delete(x.ip)]
        return {"mac": mac, "removed": removed}

    async def removeLeaseByIp(self, params: JsonObject) -> JsonObject:
        ip = ip_param(params)
        lease = await self.leases.by_ip(ip)
        removed = lease is not None and await self.leases.delete(ip)
        return {"ip": ip, "mac": lease.mac if lease else None, "removed": removed}

    async def pinMac(self, params: JsonObject) -> JsonObject:
        mac = mac_param(params)
        if params.get("ip") is not None:
            ip = ip_param(params)
        else:
            active = [x for x in await self.leases.by_mac(mac) if x.state == "active"]
            if not active:
                raise RpcError(
                    EXCHANGE,
                    "pinMac",
                    f"{mac} holds no lease; give the address to pin",
                    "not_found",
                )
            ip = max(active, key=lambda x: x.cltt).ip
        return await self._pin("pinMac", mac, ip)

    async def pinIp(self, params: JsonObject) -> JsonObject:
        ip = ip_param(params)
        lease = await self.leases.by_ip(ip)
        mac = mac_param(params) if params.get("mac") is not None else None
        if mac is None:
            if lease is None:
                raise RpcError(
                    EXCHANGE, "pinIp", f"{ip} is not leased; give the MAC to pin it to", "not_found"
                )
            mac = lease.mac
        return await self._pin("pinIp", mac, ip)

    async def _pin(self, method: str, mac: str, ip: str) -> JsonObject:
        try:
            self._check_pin(Pin(mac, ip))
        except ValueError as exc:
            raise RpcError(EXCHANGE, method, str(exc), "bad_params") from None
        lease = await self.leases.by_ip(ip)
        if lease is not None and lease.mac != mac and lease.state == "active":
            raise RpcError(
                EXCHANGE,
                method,
                f"{ip} is leased to {lease.mac} until {lease.expires.isoformat()}; "
                "remove that lease first (removeLeaseByIp)",
                "conflict",
            )
        async with self._store.tx() as tx:
            repo = BootPinRepository(tx.conn)
            holder = await repo.by_ip(ip)
            current = await repo.by_mac(mac)
            if holder is not None and holder != mac:
                raise RpcError(EXCHANGE, method, f"{ip} is pinned to {holder}", "conflict")
            if current is not None and current != ip:
                raise RpcError(
                    EXCHANGE, method, f"{mac} is pinned to {current}; unpin it first", "conflict"
                )
            if current is None:
                await repo.add(mac, ip, datetime.now(UTC))
        await self._apply_pins(await self.pins())
        return {"mac": mac, "ip": ip}

    async def unpinMac(self, params: JsonObject) -> JsonObject:
        mac = mac_param(params)
        return await self._unpin(mac, None)

    async def unpinIp(self, params: JsonObject) -> JsonObject:
        ip = ip_param(params)
        async with self._store.tx(readonly=True) as tx:
            mac = await BootPinRepository(tx.conn).by_ip(ip)
        return await self._unpin(mac, ip)

    async def _unpin(self, mac: str | None, ip: str | None) -> dict[str, Any]:
        unpinned = False
        if mac is not None:
            async with self._store.tx() as tx:
                repo = BootPinRepository(tx.conn)
                ip = ip or await repo.by_mac(mac)
                unpinned = await repo.remove_mac(mac)
        if unpinned:
            await self._apply_pins(await self.pins())
        return {"mac": mac, "ip": ip, "unpinned": unpinned}
