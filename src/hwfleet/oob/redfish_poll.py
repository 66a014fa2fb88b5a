"""The Redfish poll path: one shared asyncio HTTP client reading the few resources a poll needs.

sushy is synchronous and builds typed resource objects with many reads per call: a
chassis poll through it cost ~28 ms of controller CPU (bench/pollers.py). Pollers here
share one keep-alive connection pool (:mod:`hwfleet.oob.http11`: each request's bytes,
basic-auth header included, built once per BMC and path) and read only what the poll
type needs: the system (power state and health), Thermal/Power, the SEL entries. Bodies
are decoded with msgspec into small structs.

Why not a general client: httpx's pool spent ~14 ms of CPU per request matching queued
requests to connections across 500 origins; aiohttp, the next step, still about 0.6 ms per
poll for the request and decode, most of the 1 ms budget.

The paths to those resources are discovered once per BMC and kept; a 404 forgets them
so a reconfigured BMC is rediscovered on the next poll.

The data has the same shape the sushy driver's ``poll`` returns (:mod:`hwfleet.oob.redfish`),
which stays the driver for rich operations (power actions, BIOS, UpdateService).
"""

from __future__ import annotations

import asyncio
import base64
from typing import Any

import msgspec

from hwfleet.oob.driver import BmcAddress, BmcError
from hwfleet.oob.errors import scrub
from hwfleet.oob.http11 import HttpError, HttpPool, Origin, build_request, describe
from hwfleet.oob.redfish import MAX_SEL, _health, _number

_POWER = {"poweringon": "powering on", "poweringoff": "powering off"}


class _Link(msgspec.Struct):
    id: str = msgspec.field(name="@odata.id")


class _Collection(msgspec.Struct):
    Members: list[_Link] = []


class _Status(msgspec.Struct):
    Health: Any = None


class _System(msgspec.Struct):
    PowerState: Any = None
    Status: _Status | None = None
    LogServices: _Link | None = None


class _Holder(msgspec.Struct):
    """A chassis or manager: where its Thermal, Power and log services are."""

    Thermal: _Link | None = None
    Power: _Link | None = None
    LogServices: _Link | None = None


class _Reading(msgspec.Struct):
    Name: Any = None
    MemberId: Any = None
    ReadingCelsius: Any = None
    Reading: Any = None
    ReadingUnits: Any = None
    ReadingVolts: Any = None
    Status: _Status | None = None
    UpperThresholdCritical: Any = None
    LowerThresholdCritical: Any = None


class _Thermal(msgspec.Struct):
    Temperatures: list[_Reading] | None = None
    Fans: list[_Reading] | None = None


class _Power(msgspec.Struct):
    Voltages: list[_Reading] | None = None


class _LogService(msgspec.Struct):
    Entries: _Link | None = None


class _Entry(msgspec.Struct):
    Id: Any = None
    Created: Any = None
    Severity: Any = None
    Message: Any = None
    SensorType: Any = None


class _Entries(msgspec.Struct):
    Members: list[_Entry] = []


def _sensor(r: _Reading, kind: str, value: Any, units: str) -> dict[str, Any]:
    return {
        "name": str(r.Name or r.MemberId or "?"),
        "kind": kind,
        "value": _number(value),
        "units": units,
        "health": _health(r.Status.Health) if r.Status is not None else "unknown",
        "upper_critical": _number(r.UpperThresholdCritical),
        "lower_critical": _number(r.LowerThresholdCritical),
    }


class _Paths(msgspec.Struct):
    """What discovery found on one BMC (kept until a 404 says it moved)."""

    system: str
    thermal: list[str] = []
    power: list[str] = []
    sdr_known: bool = False
    sel: str | None = None


def urlsplit_path(url: str) -> str:
    """The path prefix of a service URL (usually empty: Redfish lives at the root)."""
    rest = url.split("://", 1)[-1]
    slash = rest.find("/")
    return "" if slash < 0 else rest[slash:].rstrip("/")


class RedfishPoller:
    """``await poll(address, type)``: the data of one ``chassis``/``sdr``/``sel`` poll."""

    def __init__(self, *, timeout: float) -> None:
        self.timeout = timeout
        self._pool = HttpPool()
        self._paths: dict[str, _Paths] = {}
        #: (address, verify, path, username, password) -> the request's bytes, built once.
        self._requests: dict[tuple[str, bool, str, str, str], tuple[Origin, bytes]] = {}

    async def close(self) -> None:
        self._pool.close()

    def _request(self, a: BmcAddress, path: str) -> tuple[Origin, bytes]:
        key = (a.address, a.verify_tls, path, a.username, a.password)
        found = self._requests.get(key)
        if found is None:
            origin = Origin(a.address, verify=a.verify_tls)
            token = base64.b64encode(f"{a.username}:{a.password}".encode()).decode()
            base = urlsplit_path(a.address)
            headers = {
                "Authorization": f"Basic {token}",
                "Accept": "application/json",
                "OData-Version": "4.0",
                "User-Agent": "hwfleet-poller",
            }
            found = self._requests[key] = (origin, build_request(origin, base + path, headers))
        return found

    async def _get(self, a: BmcAddress, path: str, into: type[Any]) -> Any:
        try:
            origin, request = self._request(a, path)
            async with asyncio.timeout(self.timeout):
                status, content = await self._pool.get(origin, request)
        except TimeoutError:
            raise BmcError("timeout", f"redfish BMC {a.address} did not answer in time") from None
        except OSError as exc:  # refused, reset, unreachable, TLS (a bad certificate too)
            detail = scrub(describe(exc), a)
            raise BmcError("unreachable", f"redfish BMC {a.address}: {detail}") from None
        except (HttpError, ValueError) as exc:  # ValueError: a path that cannot be sent
            detail = scrub(describe(exc), a)
            raise BmcError("protocol", f"redfish BMC {a.address}: {path}: {detail}") from None
        if status in (401, 403):
            raise BmcError("auth", f"redfish BMC {a.address} refused the credentials")
        if status == 404:
            self._paths.pop(a.address, None)  # rediscover next time: the layout changed
        if status != 200:
            raise BmcError("protocol", f"redfish BMC {a.address}: {path} answered {status}")
        try:
            return msgspec.json.decode(content, type=into)
        except msgspec.DecodeError as exc:
            detail = scrub(str(exc), a)
            raise BmcError("protocol", f"redfish BMC {a.address}: {path}: {detail}") from None

    async def _members(self, a: BmcAddress, path: str) -> list[str]:
        return [m.id for m in (await self._get(a, path, _Collection)).Members]

    async def _discover(self, a: BmcAddress) -> _Paths:
        paths = self._paths.get(a.address)
        if paths is None:
            if a.system:
                system = f"/redfish/v1/Systems/{a.system}"
            else:
                members = await self._members(a, "/redfish/v1/Systems")
                if not members:
                    raise BmcError("protocol", f"redfish BMC {a.address} lists no system")
                system = members[0]
            paths = self._paths[a.address] = _Paths(system=system)
        return paths

    async def poll(self, a: BmcAddress, kind: str) -> Any:
        paths = await self._discover(a)
        if kind == "chassis":
            s = await self._get(a, paths.system, _System)
            power = str(s.PowerState or "unknown").lower()
            health = s.Status.Health if s.Status is not None else None
            return {"power": _POWER.get(power, power), "health": _health(health)}
        if kind == "sdr":
            return await self._sdr(a, paths)
        if kind == "sel":
            return await self._sel(a, paths)
        raise BmcError("bad_input", f"the redfish driver has no {kind!r} poller")

    async def _sdr(self, a: BmcAddress, paths: _Paths) -> list[dict[str, Any]]:
        if not paths.sdr_known:
            for chassis in await self._members(a, "/redfish/v1/Chassis"):
                holder = await self._get(a, chassis, _Holder)
                if holder.Thermal is not None:
                    paths.thermal.append(holder.Thermal.id)
                if holder.Power is not None:
                    paths.power.append(holder.Power.id)
            paths.sdr_known = True
        out: list[dict[str, Any]] = []
        for path in paths.thermal:
            t = await self._get(a, path, _Thermal)
            out += [_sensor(r, "temperature", r.ReadingCelsius, "C") for r in t.Temperatures or []]
            out += [_sensor(r, "fan", r.Reading, str(r.ReadingUnits or "")) for r in t.Fans or []]
        for path in paths.power:
            p = await self._get(a, path, _Power)
            out += [_sensor(r, "voltage", r.ReadingVolts, "V") for r in p.Voltages or []]
        return out

    async def _sel(self, a: BmcAddress, paths: _Paths) -> list[dict[str, Any]]:
        if paths.sel is None:
            paths.sel = await self._find_sel(a, paths)
        entries = await self._get(a, paths.sel, _Entries)
        return [
            {
                "id": str(e.Id or ""),
                "timestamp": str(e.Created or ""),
                "severity": _health(e.Severity),
                "message": str(e.Message or ""),
                "sensor": str(e.SensorType or ""),
            }
            for e in entries.Members[-MAX_SEL:]
        ]

    async def _find_sel(self, a: BmcAddress, paths: _Paths) -> str:
        """The SEL's Entries: the system's log services, then each manager's."""
        services: list[str] = []
        system = await self._get(a, paths.system, _System)
        if system.LogServices is not None:
            services += await self._members(a, system.LogServices.id)
        for manager in await self._members(a, "/redfish/v1/Managers"):
            holder = await self._get(a, manager, _Holder)
            if holder.LogServices is not None:
                services += await self._members(a, holder.LogServices.id)
        if not services:
            raise BmcError("unsupported", "this Redfish service offers no log service (SEL)")
        # Prefer the one named SEL: other logs (Lclog, audit) are not the event log.
        chosen = next(
            (p for p in services if p.rstrip("/").rsplit("/", 1)[-1].upper() == "SEL"), services[0]
        )
        service = await self._get(a, chosen, _LogService)
        return service.Entries.id if service.Entries is not None else chosen + "/Entries"
