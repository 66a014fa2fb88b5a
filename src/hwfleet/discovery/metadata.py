"""Device metadata (seed 004, DESIGN §7): what a discovery reply tells about a device.

The status fields come from the agent's one status rule,
:class:`hwfleet.agent.status.StatusTracker`.
"""

from __future__ import annotations

import msgspec

from hwfleet.types import Serial


class DeviceMetadata(msgspec.Struct, kw_only=True):
    """What discovery tells about a device (seed 004 metadata)."""

    uuid: str
    name: str
    serial: Serial
    model_id: str
    version: str
    ipaddr: str
    #: ``(host, port)`` of the device's agent/diagnostics port.
    endpoint: tuple[str, int]
    st_id: int = 0
    st_ts: float = 0.0
    st_prog: float | None = None
    head_module: str | None = None
    error_label: str | None = None
