"""The boot services as one part of the controller: Kea, the ``dhcp`` RPCs, lease events, TFTP.

Built from :class:`~hwfleet.settings.ServerSettings` (``boot_*`` and ``dhcp_*`` fields);
nothing runs unless ``boot_interface`` and ``dhcp_range`` are set.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import shlex
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from hwfleet.boot.dhcp_rpc import DhcpRpc
from hwfleet.boot.kea_config import DhcpRange, KeaLayout, KeaParams, Pin, build_config, check_pin
from hwfleet.boot.kea_supervisor import KeaSupervisor, write_config
from hwfleet.boot.lease_watch import LeaseWatcher
from hwfleet.boot.leases import LeaseSource, LeaseTable
from hwfleet.boot.nodes import NodeResolver
from hwfleet.boot.profiles import ActiveGraphProfiles, NoActiveGraphs, ProfileLibrary
from hwfleet.boot.proxy_mode import ProxyDhcpRpc, ProxyMode, Sightings
from hwfleet.boot.scripts import BootScripts, IssueToken
from hwfleet.boot.tftp import TftpServer, prepare_root
from hwfleet.settings import ServerSettings, SettingsError
from hwfleet.types import parse_host_port

if TYPE_CHECKING:
    from hwfleet.bus.base import Bus, Subscription
    from hwfleet.store import Store

log = logging.getLogger(__name__)


class EventPublisher(Protocol):
    """Records an event and announces it on ``events`` (the controller's EventPublisher);
    a protocol here so that boot does not import the controller (layering)."""

    async def emit(
        self, routing_key: str, payload: dict[str, Any], *, device_uuid: str | None = None
    ) -> None: ...


async def interface_ipv4(interface: str, launcher: list[str]) -> tuple[str, int]:
    """The first IPv4 address and prefix length of ``interface`` (in the launcher's namespace)."""
    proc = await asyncio.create_subprocess_exec(
        *launcher, "ip", "-4", "-j", "addr", "show", "dev", interface,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await proc.communicate()
    if proc.returncode != 0:
        raise SettingsError(
            f"boot interface {interface!r}: {err.decode().strip() or 'not found'}",
            setting="boot_interface",
        )
    for link in json.loads(out or b"[]"):
        for addr in link.get("addr_info", []):
            if addr.get("family") == "inet":
                return str(addr["local"]), int(addr["prefixlen"])
    raise SettingsError(
        f"boot interface {interface!r} has no IPv4 address: give it one (DHCP serves its subnet)",
        setting="boot_interface",
    )


class BootService:
    def __init__(
        self,
        settings: ServerSettings,
        store: Store,
        bus: Bus,
        events: EventPublisher,
        *,
        issue_token: IssueToken,
        graphs: ActiveGraphProfiles | None = None,
        ca_fingerprint: str = "",
    ) -> None:
        """``issue_token(ttl)``: a single-use enrollment token (KeyAdmin.create_token);
        ``graphs``: the task-graph engine's boot profiles (default: none);
        ``ca_fingerprint``: the controller CA's, which discovery agents pin."""
        self.ca_fingerprint = ca_fingerprint
        self.settings = settings
        self._issue_token = issue_token
        self.graphs: ActiveGraphProfiles = graphs or NoActiveGraphs()
        self._store = store
        self._bus = bus
        self._events = events
        self.launcher = shlex.split(settings.boot_kea_launcher)
        self.layout = KeaLayout(Path(settings.data_dir) / "boot" / "kea")
        self.nodes = NodeResolver(store)
        self.params: KeaParams
        self.kea: KeaSupervisor | None = None
        self.proxy: ProxyMode | None = None
        self.leases: LeaseSource
        self.rpc: DhcpRpc
        self.watcher: LeaseWatcher
        self.tftp: TftpServer | None = None
        self.scripts: BootScripts
        boot_dir = self.layout.directory.parent
        self.files_dir = Path(settings.boot_files_dir or boot_dir / "files")
        self.profiles = ProfileLibrary(boot_dir / "profiles")
        self._closers: list[Any] = []

    @property
    def enabled(self) -> bool:
        return bool(self.settings.boot_interface)

    async def start(self) -> None:
        s = self.settings
        server_ip, pool = await self._addresses()
        api_port = parse_host_port(s.api_listen, allow_any_port=True)[1]
        self.params = KeaParams(
            interface=s.boot_interface,
            server_ip=server_ip,
            dhcp_range=pool,
            layout=self.layout,
            http_base=s.boot_http_url or f"http://{server_ip}:{api_port}",
            lease_time=s.dhcp_lease_time,
        )
        if s.dhcp_proxy:
            await self._start_proxy()
        else:
            await self._start_kea()
        subscription: Subscription = await self.rpc.serve(self._bus)
        self._closers.append(subscription.cancel)
        await self._start_tftp(server_ip)
        agent_port = parse_host_port(s.agent_listen, allow_any_port=True)[1]
        self.scripts = BootScripts(
            self.nodes,
            self.leases,
            self.graphs,
            self.profiles,
            self._issue_token,
            base_url=self.params.http_base,
            controller=f"{server_ip}:{agent_port}",
            ca_fingerprint=self.ca_fingerprint,
        )

    async def _addresses(self) -> tuple[str, DhcpRange]:
        """This server's boot-network address and the pool (in proxy mode: the site's)."""
        s = self.settings
        if s.dhcp_proxy and self.launcher:
            raise SettingsError(
                "--dhcp-proxy starts no Kea, so --boot-kea-launcher has nothing to launch: run "
                "hwfleet server where the boot interface is (e.g. inside its namespace)",
                setting="boot_kea_launcher",
            )
        if not s.dhcp_range and not s.dhcp_proxy:
            raise SettingsError(
                "--boot-interface needs --dhcp-range A-B (or --dhcp-proxy beside another DHCP "
                "server)",
                setting="dhcp_range",
            )
        if s.boot_server_ip:
            server_ip, prefix = s.boot_server_ip, None
        else:
            server_ip, prefix = await interface_ipv4(s.boot_interface, self.launcher)
        try:
            if s.dhcp_range:
                pool = DhcpRange.parse(s.dhcp_range, prefix)
                if ipaddress.IPv4Address(server_ip) not in pool.network:
                    # Kea would start and serve a subnet no client on IF is in: say so now.
                    raise ValueError(
                        f"DHCP range {s.dhcp_range!r} is not in the subnet of this server's "
                        f"address {server_ip} on {s.boot_interface} ({pool.network})"
                    )
                if ipaddress.IPv4Address(server_ip) in pool:
                    raise ValueError(
                        f"DHCP range {s.dhcp_range!r} holds this server's own address "
                        f"{server_ip}: Kea would lease it to a client"
                    )
                return server_ip, pool
            if prefix is None:
                raise ValueError("--dhcp-proxy with --boot-server-ip needs --dhcp-range A-B")
            # proxyDHCP without a range: the site server's pool is taken to be the subnet.
            net = ipaddress.IPv4Network(f"{server_ip}/{prefix}", strict=False)
            return server_ip, DhcpRange.parse(f"{net[1]}-{net[-2]}", prefix)
        except ValueError as exc:
            raise SettingsError(str(exc), setting="dhcp_range") from None

    async def _start_kea(self) -> None:
        s = self.settings
        self.kea = KeaSupervisor(self.layout, self._notify, launcher=self.launcher)
        self.leases = LeaseTable(self.kea.control)
        self.rpc = DhcpRpc(
            self.leases, self._store, self.params.dhcp_range, self._check_pin, self.apply_pins
        )
        await self.kea.start(self._config(await self.rpc.pins()))
        self._closers.append(self.kea.close)
        self.watcher = LeaseWatcher(self.leases, self.nodes, self._emit, s.boot_lease_poll)
        await self.watcher.poll()  # the baseline: leases from before this start are not news
        await self.watcher.start()
        self._closers.append(self.watcher.close)

    async def _start_proxy(self) -> None:
        sightings = Sightings(self.settings.dhcp_lease_time)
        self.leases = sightings
        self.rpc = ProxyDhcpRpc(
            sightings, self._store, self.params.dhcp_range, self._check_pin, self.apply_pins
        )
        # Not started: sightings arrive as the proxy sees them, announced one by one.
        self.watcher = LeaseWatcher(sightings, self.nodes, self._emit)
        self.proxy = ProxyMode(self.params, sightings, self.watcher)
        try:
            await self.proxy.start()
        except OSError as exc:
            raise SettingsError(str(exc), setting="boot_interface") from None
        self._closers.append(self.proxy.close)

    async def _start_tftp(self, server_ip: str) -> None:
        listen = self.settings.boot_tftp_listen
        if listen == "off":
            return
        host, port = parse_host_port(listen or f"{server_ip}:69", allow_any_port=True)
        root = Path(self.settings.boot_tftp_root or self.layout.directory.parent / "tftp")
        if not self.settings.boot_tftp_root:
            copied = await asyncio.to_thread(prepare_root, Path(self.settings.boot_ipxe_dir), root)
            if not copied:
                log.warning("no iPXE loader in %s: install Debian's ipxe package", root)
        self.tftp = TftpServer(root, self._notify, self.node_of_ip)
        await self.tftp.start(host, port)
        self._closers.append(self.tftp.close)

    def _config(self, pins: list[Pin]) -> dict[str, Any]:
        from dataclasses import replace

        return build_config(replace(self.params, pins=tuple(pins)))

    def _check_pin(self, pin: Pin) -> None:
        check_pin(self.params, pin)

    async def apply_pins(self, pins: list[Pin]) -> None:
        """Kea's configuration with these pins: on disk (for restarts) and in the live Kea."""
        config = self._config(pins)
        write_config(self.layout.config, config)
        assert self.kea is not None, "pins are refused in proxy mode (ProxyDhcpRpc)"
        await self.kea.control.command("config-set", config)

    async def node_of_ip(self, ip: str) -> str | None:
        lease = await self.leases.by_ip(ip)
        return None if lease is None else (await self.nodes.find(lease.mac)).id

    async def _notify(self, key: str, payload: dict[str, Any]) -> None:
        await self._events.emit(key, payload)

    async def announce(self, key: str, payload: dict[str, Any]) -> None:
        """Record and publish an event (the HTTP boot routes use it)."""
        await self._events.emit(key, payload)

    async def _emit(self, key: str, payload: dict[str, Any], device: str | None) -> None:
        await self._events.emit(key, payload, device_uuid=device)

    async def status(self) -> dict[str, Any]:
        """What ``hwfleet boot status`` shows."""
        return {
            "mode": "proxy" if self.proxy is not None else "dhcp",
            "interface": self.params.interface,
            "server_ip": self.params.server_ip,
            "range": str(self.params.dhcp_range),
            "subnet": str(self.params.dhcp_range.network),
            "kea": None if self.kea is None else await self._kea_status(self.kea),
            "proxy": None if self.proxy is None else {"answered": self.proxy.answered},
            "tftp": None if self.tftp is None else "{}:{}".format(*self.tftp.address),
            "http_base": self.params.http_base,
            "binds": self.watcher.binds,
        }

    async def _kea_status(self, kea: KeaSupervisor) -> dict[str, Any]:
        return {
            "alive": await kea.control.alive(),
            "pid": kea.pid,
            "attached": kea.attached,
            "restarts": kea.restarts,
            "socket": str(self.layout.socket),
        }

    async def close(self) -> None:
        while self._closers:
            closer = self._closers.pop()
            try:
                await closer()
            except Exception:
                log.exception("error while closing the boot services")
