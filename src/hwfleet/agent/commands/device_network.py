"""Seed 004 ``modify_network`` and ``get_wifi_list``: ``device.network.*``, ``device.wifi.list``.

A simulated device (its hardware manager is a simulation profile's) records the
settings in its data dir and reports them back; it never touches the machine's
network, and its Wi-Fi list is its profile's ``wifi``. A real device applies
settings with NetworkManager or iproute2 (:mod:`hwfleet.agent.netconfig.apply`)
and only to the interface the operator names. Either way the reply, the
record on disk and the log line carry the redacted view: a Wi-Fi secret is
shown as ``"***"`` and never stored by hwfleet.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

import msgspec

from hwfleet.agent.hardware.simulated import SimulatedHardwareManager
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
from hwfleet.agent.netconfig.model import check_interface
from hwfleet.protocol import methods
from hwfleet.protocol.errors import ErrorCode, MethodError

if TYPE_CHECKING:
    from hwfleet.agent.runtime import AgentRuntime
    from hwfleet.protocol.methods import MethodRegistry

NETWORK_DOC = "network.json"
#: The interface a simulated device without NICs in its profile pretends to have.
SIM_DEFAULT_INTERFACE = "sim0"


class InterfaceParams(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    interface: str | None = None


def simulated_manager(rt: AgentRuntime) -> SimulatedHardwareManager | None:
    """The profile manager answering for this device, if it is a simulated one."""
    for manager in rt.hardware.managers:
        if isinstance(manager, SimulatedHardwareManager):
            return manager
    return None


def _bad(exc: NetConfigError) -> MethodError:
    return MethodError(str(exc), ErrorCode.BAD_PARAMS)


def _records(rt: AgentRuntime) -> dict[str, dict[str, Any]]:
    try:
        doc = rt.local.read(NETWORK_DOC) or {}
    except LocalStateError as exc:
        raise MethodError(str(exc)) from None
    interfaces = doc.get("interfaces", {})
    return interfaces if isinstance(interfaces, dict) else {}


def _sim_interface(sim: SimulatedHardwareManager, requested: str | None) -> str:
    names = [nic.name for nic in sim.device.interfaces] or [SIM_DEFAULT_INTERFACE]
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
    sim = simulated_manager(rt)
    if sim is not None:
        interface = _sim_interface(sim, requested)
        shown = _records(rt).get(interface) or {"interface": interface, "method": "dhcp"}
        return {"network": shown, "simulated": True}
    from hwfleet.agent.netconfig.apply import ApplyError, read_live

    interface = _real_interface(rt, requested)
    try:
        live = await read_live(interface)
    except NetConfigError as exc:
        raise _bad(exc) from None
    except ApplyError as exc:
        raise MethodError(str(exc)) from None
    reply: dict[str, Any] = {"network": live, "simulated": False}
    kept = _records(rt).get(interface)
    if kept is not None:
        reply["recorded"] = kept  # what hwfleet last set, Wi-Fi included (secrets masked)
    return reply


async def network_set(rt: AgentRuntime, params: NetworkParams) -> dict[str, Any]:
    sim = simulated_manager(rt)
    async with rt.local.lock:
        records = _records(rt)
        try:
            if params.interface is not None:
                check_interface(params.interface)
            if sim is not None:
                interface = _sim_interface(sim, params.interface)
            elif params.interface is None:
                raise NetConfigError("interface", "is required on a real device (name it)")
            else:
                interface = params.interface
            previous = records.get(interface)
            settings = validate(params, from_record(previous) if previous else None)
        except NetConfigError as exc:
            raise _bad(exc) from None
        settings = dataclasses.replace(settings, interface=interface)
        reply: dict[str, Any] = {"network": redacted(settings), "simulated": sim is not None}
        if sim is None:
            reply.update(await _apply(settings))
        records[interface] = record(settings)
        try:
            rt.local.write(NETWORK_DOC, {"version": 1, "interfaces": records})
        except (OSError, LocalStateError) as exc:
            raise MethodError(f"applied, but cannot record the settings: {exc}") from None
    await rt.log("notice", "network settings changed", network=reply["network"])
    return reply


async def _apply(settings: NetworkSettings) -> dict[str, Any]:
    from hwfleet.agent.netconfig.apply import ApplyError, apply

    try:
        outcome = await apply(settings)
    except NetConfigError as exc:
        raise _bad(exc) from None
    except ApplyError as exc:
        raise MethodError(f"applying the settings failed: {exc}") from None
    return {"applied": True, **outcome}


async def wifi_list(rt: AgentRuntime, params: InterfaceParams) -> dict[str, Any]:
    sim = simulated_manager(rt)
    if sim is not None:
        # Exactly what the profile says, every key present even when the profile left it out.
        networks = [
            {"ssid": net.ssid, "signal": net.signal, "security": net.security}
            for net in sim.device.wifi
        ]
        return {"wifi": networks, "simulated": True}
    from hwfleet.agent.netconfig.apply import ApplyError, scan_wifi

    try:
        interface = check_interface(params.interface) if params.interface else None
        return {"wifi": await scan_wifi(interface), "simulated": False}
    except NetConfigError as exc:
        raise _bad(exc) from None
    except ApplyError as exc:
        raise MethodError(str(exc)) from None


def register(registry: MethodRegistry[AgentRuntime]) -> None:
    registry.add(methods.DEVICE_NETWORK_GET, network_get, InterfaceParams)
    registry.add(methods.DEVICE_NETWORK_SET, network_set, NetworkParams)
    registry.add(methods.DEVICE_WIFI_LIST, wifi_list, InterfaceParams)
