"""DNS-SD advertisement of real agents as ``_hwfleet._tcp.local.`` (python-zeroconf).

Standard tools (``avahi-browse -r _hwfleet._tcp``) then list agents with TXT records
``uuid``, ``serial``, ``model_id``, ``version`` and ``fingerprint``. zeroconf is an
optional dependency (``hwfleet[discovery]``) and imported only when advertising;
simulated devices do not advertise. ``interfaces`` limits the mDNS traffic to the
named local addresses (e.g. ``["127.0.0.1"]``); by default zeroconf uses them all.
"""

from __future__ import annotations

import re
import socket
from typing import Any

from hwfleet.discovery.metadata import DeviceMetadata

SERVICE_TYPE = "_hwfleet._tcp.local."
#: DNS-SD instance names are at most 63 bytes.
_MAX_INSTANCE = 63


def txt_properties(meta: DeviceMetadata, fingerprint: str | None) -> dict[str, str]:
    """The TXT record: identity and key fingerprint, never anything secret."""
    props = {
        "uuid": meta.uuid,
        "serial": str(meta.serial),
        "model_id": meta.model_id,
        "version": meta.version,
    }
    if fingerprint is not None:
        props["fingerprint"] = fingerprint
    for key, value in props.items():
        if len(key) + 1 + len(value.encode()) > 255:
            raise ValueError(f"TXT entry {key!r} is longer than the 255-byte DNS limit")
    return props


def instance_name(meta: DeviceMetadata) -> str:
    """``<name>-<uuid prefix>``, sanitised, unique enough, within the DNS label limit."""
    base = re.sub(r"[^A-Za-z0-9-]+", "-", meta.name).strip("-") or "hwfleet"
    suffix = "-" + meta.uuid.split("-")[0]
    return base[: _MAX_INSTANCE - len(suffix)] + suffix


class DnsSdAdvertiser:
    """Registers (and on ``close`` withdraws) one agent's ``_hwfleet._tcp`` service."""

    def __init__(
        self,
        meta: DeviceMetadata,
        *,
        port: int,
        fingerprint: str | None = None,
        interfaces: list[str] | None = None,
    ) -> None:
        self.meta = meta
        self.port = port
        self.fingerprint = fingerprint
        self.interfaces = interfaces
        self._zc: Any = None
        self._info: Any = None

    @property
    def service_name(self) -> str:
        return f"{instance_name(self.meta)}.{SERVICE_TYPE}"

    def _service_info(self) -> Any:
        from zeroconf import ServiceInfo

        host = self.meta.ipaddr or (self.interfaces[0] if self.interfaces else "127.0.0.1")
        return ServiceInfo(
            SERVICE_TYPE,
            self.service_name,
            addresses=[socket.inet_aton(host)],
            port=self.port,
            properties=txt_properties(self.meta, self.fingerprint),
            server=f"{instance_name(self.meta)}.local.",
        )

    async def start(self) -> None:
        from zeroconf import InterfaceChoice, IPVersion
        from zeroconf.asyncio import AsyncZeroconf

        interfaces: Any = self.interfaces if self.interfaces else InterfaceChoice.All
        self._zc = AsyncZeroconf(interfaces=interfaces, ip_version=IPVersion.V4Only)
        self._info = self._service_info()
        await (await self._zc.async_register_service(self._info, allow_name_change=True))

    async def update(self, meta: DeviceMetadata) -> None:
        """Re-announce after the metadata (version, serial) changed."""
        self.meta = meta
        if self._zc is None:
            return
        old_name = self._info.name
        self._info = self._service_info()
        if self._info.name != old_name:
            raise ValueError("the device name changed: close and start a new advertiser")
        await (await self._zc.async_update_service(self._info))

    async def close(self) -> None:
        if self._zc is None:
            return
        try:
            await (await self._zc.async_unregister_service(self._info))
        finally:
            await self._zc.async_close()
            self._zc = None
