"""Seed 004 ``modify_network`` and ``get_wifi_list``: ``device.network.*``, ``device.wifi.list``.

The runtime's network backend (:mod:`hwfleet.agent.netconfig.backend`) does the
work: a real device applies settings with NetworkManager or iproute2 and only
to the interface the operator names; a simulated one (its backend handed in by
:mod:`hwfleet.sim`) only records them and reports its profile's Wi-Fi list.
Either way the reply, the record on disk and the log line carry the redacted
view: a Wi-Fi secret is shown as ``"***"`` and never stored by hwfleet.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

import msgspec

from hwfleet.agent.localstate import LocalStateError
from hwfleet.agent.netconfig import (
    NetConfigError,
    NetworkParams,
    NetworkSettings,
    from_record,
    record,
    redacted,
    validate,
)
from hwfleet.agent.netconfig.apply import ApplyError
from hwfleet.agent.netconfig.model import check_interface
from hwfleet.protocol.errors import ErrorCode, MethodError

if TYPE_CHECKING:
    from hwfleet.agent.runtime import AgentRuntime

NETWORK_DOC = "network.json"


class InterfaceParams(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    interface: str | None = None


def _bad(exc: NetConfigError) -> MethodError:
    return MethodError(str(exc), ErrorCode.BAD_PARAMS)


def _records(rt: AgentRuntime) -> dict[str, dict[str, Any]]:
    try:
        doc = rt.local.read(NETWORK_DOC) or {}
    except LocalStateError as exc:
        raise MethodError(str(exc)) from None
    interfaces = doc.get("interfaces", {})
    return interfaces if isinstance(interfaces, dict) else {}


def _listed_interface(names: list[str], requested: str | None) -> str:
    """A backend with a fixed set of interfaces: the one named, or its first."""
    if requested is None:
        return names[0]
    if requested not in names:
        raise MethodError(
            f"interface: {requested} is not one of this device's interfaces ({', '.join(names)})",
            ErrorCode.BAD_PARAMS,
        )
    return requested


def _real_interface(rt: AgentRuntime, requested: str | None) -> str:
    """Real devices act only on a named interface (or the one hwfleet configured before)."""
    if requested is not None:
        return requested
    recorded = list(_records(rt))
    if len(recorded) == 1:
        return recorded[0]
    raise MethodError("interface: name the interface on a real device", ErrorCode.BAD_PARAMS)


async def network_get(rt: AgentRuntime, params: InterfaceParams) -> dict[str, Any]:
    try:
        requested = check_interface(params.interface) if params.interface else None
    except NetConfigError as exc:
        raise _bad(exc) from None
    backend = rt.network
    names = backend.interface_names()
    if names is not None:
        interface = _listed_interface(names, requested)
    else:
        interface = _real_interface(rt, requested)
    try:
        live = await backend.read_live(interface)
    except NetConfigError as exc:
        raise _bad(exc) from None
    except ApplyError as exc:
        raise MethodError(str(exc)) from None
    if live is None:
        shown = _records(rt).get(interface) or {"interface": interface, "method": "dhcp"}
        return {"network": shown, "simulated": backend.simulated}
    reply: dict[str, Any] = {"network": live, "simulated": backend.simulated}
    kept = _records(rt).get(interface)
    if kept is not None:
        reply["recorded"] = kept  # what hwfleet last set, Wi-Fi included (secrets masked)
    return reply


async def network_set(rt: AgentRuntime, params: NetworkParams) -> dict[str, Any]:
    backend = rt.network
    names = backend.interface_names()
    async with rt.local.lock:
        records = _records(rt)
        try:
            if params.interface is not None:
                check_interface(params.interface)
            if names is not None:
                interface = _listed_interface(names, params.interface)
            elif params.interface is None:
                raise NetConfigError("interface", "is required on a real device (name it)")
            else:
                interface = params.interface
            previous = records.get(interface)
            settings = validate(params, from_record(previous) if previous else None)
        except NetConfigError as exc:
            raise _bad(exc) from None
        settings = dataclasses.replace(settings, interface=interface)
        reply: dict[str, Any] = {"network": redacted(settings), "simulated": backend.simulated}
        reply.update(await _apply(rt, settings))
        records[interface] = record(settings)
        try:
            rt.local.write(NETWORK_DOC, {"version": 1, "interfaces": records})
        except (OSError, LocalStateError) as exc:
            raise MethodError(f"applied, but cannot record the settings: {exc}") from None
    await rt.log("notice", "network settings changed", network=reply["network"])
    return reply


async def _apply(rt: AgentRuntime, settings: NetworkSettings) -> dict[str, Any]:
    try:
        return await rt.network.apply(settings)
    except NetConfigError as exc:
        raise _bad(exc) from None
    except ApplyError as exc:
        raise MethodError(f"applying the settings failed: {exc}") from None


async def wifi_list(rt: AgentRuntime, params: InterfaceParams) -> dict[str, Any]:
    backend = rt.network
    try:
        interface = check_interface(params.interface) if params.interface else None
        return {"wifi": await backend.scan_wifi(interface), "simulated": backend.simulated}
    except NetConfigError as exc:
        raise _bad(exc) from None
    except ApplyError as exc:
        raise MethodError(str(exc)) from None
