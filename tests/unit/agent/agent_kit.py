"""Helpers for the agent command tests: a simulated runtime, a pinned CA, one-call dispatch."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import msgspec

from hwfleet.agent.runtime import AgentRuntime
from hwfleet.protocol import envelope
from hwfleet.sim.fleet import runtime_for
from hwfleet.sim.profiles import ProfileDevice, WifiNetwork, generate
from hwfleet.trust import CertificateAuthority

WIFI = [
    WifiNetwork(ssid="lab-5g", signal=81, security="WPA2"),
    WifiNetwork(ssid="guest", signal=40),
]


class Failed(Exception):
    """The agent answered with an error envelope."""

    def __init__(self, code: str, msg: str) -> None:
        super().__init__(f"{code}: {msg}")
        self.code = code
        self.msg = msg


def sim_device(wifi: list[WifiNetwork] | None = None) -> ProfileDevice:
    device = generate(1, seed=5).devices[0]
    device.wifi = list(WIFI if wifi is None else wifi)
    return device


def sim_runtime(data_dir: Path | None, device: ProfileDevice | None = None) -> AgentRuntime:
    return runtime_for(device or sim_device(), 0, 5, data_dir)


async def call(rt: AgentRuntime, method: str, params: dict[str, Any] | None = None) -> Any:
    """Dispatch one command as the link would; the result, or :class:`Failed`."""
    reply = await rt.registry.dispatch(rt, envelope.command(method, params or {}))
    if isinstance(reply, envelope.Error):
        raise Failed(reply.error.code, reply.error.msg)
    return msgspec.to_builtins(reply.result)


def pin_controller(ca_dir: Path, device_dir: Path) -> CertificateAuthority:
    """A real controller CA, pinned in the device's pki dir as enrollment would pin it."""
    ca = CertificateAuthority.load_or_create(ca_dir)
    (device_dir / "pki").mkdir(parents=True, exist_ok=True)
    shutil.copyfile(ca.ca_path, device_dir / "pki" / "controller-ca.crt")
    return ca
