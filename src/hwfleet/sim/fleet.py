"""N simulated agents in one process, each with its own connection, identity and address.

Simulated device ``i`` (0-based) uses its own loopback address,
``address_base + i`` (default 127.1.0.1 + i): its stream connection comes from
there and its discovery responder listens there, so the controller and
``hwfleet discover --probe 127.1.0.0/24`` see distinct peers, as on a LAN
(DESIGN §8). Over the AMQP carrier the devices share one broker connection,
each with its own queues and identity.
"""

from __future__ import annotations

import asyncio
import errno
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from hwfleet import __version__
from hwfleet.agent.commands import register_all
from hwfleet.agent.identity import DeviceInfo
from hwfleet.agent.links import Link
from hwfleet.agent.links.stream import StreamLink
from hwfleet.agent.runtime import AgentRuntime
from hwfleet.protocol.methods import MethodRegistry
from hwfleet.sim.addresses import (
    DEFAULT_ADDRESS_BASE,
    AddressesTakenError,
    address_for,
    taken_message,
)
from hwfleet.sim.hardware import simulated_dispatcher
from hwfleet.sim.network import SimulatedNetwork
from hwfleet.sim.profiles import Profile, ProfileDevice, device_uuid

if TYPE_CHECKING:
    from hwfleet.agent.links.tls import AgentTls
    from hwfleet.bus.base import Bus
    from hwfleet.discovery import DiscoveryResponder
    from hwfleet.mdp.endpoint import MdpEndpoint
    from hwfleet.mdp.reports import Reporter
    from hwfleet.trust import AgentIdentity

log = logging.getLogger(__name__)


@dataclass(slots=True)
class SimulatedDevice:
    index: int
    address: str
    runtime: AgentRuntime
    link: Link
    #: A stream device's TLS, which makes its identity at the first connect (see ``identity``).
    tls: AgentTls | None = None
    #: An AMQP device's identity, made with the device.
    bus_identity: AgentIdentity | None = None
    responder: DiscoveryResponder | None = None
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    mdp: MdpEndpoint | None = None
    reporter: Reporter | None = None

    @property
    def identity(self) -> AgentIdentity | None:
        """The device's key and certificate; None for a stream device that has not yet
        tried to connect (or with --insecure)."""
        return self.tls.identity if self.tls is not None else self.bus_identity


def simulated_runtime(
    profile_path: str, device_index: int, data_dir: str | Path | None = None
) -> AgentRuntime:
    """``hwfleet agent --simulate PROFILE``: be device ``device_index`` of that profile."""
    from hwfleet.sim.profiles import load_profile

    profile = load_profile(profile_path)
    if not 0 <= device_index < len(profile.devices):
        raise ValueError(
            f"{profile_path} has {len(profile.devices)} devices; "
            f"--device-index {device_index} is out of range"
        )
    return runtime_for(profile.devices[device_index], device_index, seed=0, data_dir=data_dir)


def runtime_for(
    profile_device: ProfileDevice,
    index: int,
    seed: int,
    data_dir: str | Path | None = None,
    registry: MethodRegistry[AgentRuntime] | None = None,
) -> AgentRuntime:
    """``data_dir``: the device's own directory (its name, trust list, password live there).

    ``registry``: the device's commands, already registered (None: registered here).
    """
    info = DeviceInfo(
        uuid=profile_device.uuid or device_uuid(profile_device, index, seed),
        serial=profile_device.sn,
        name=profile_device.name or f"sim-{index:04d}",
        model_id=profile_device.model_id or "hwfleet-sim",
        version=profile_device.version or __version__,
    )
    return AgentRuntime(
        info,
        simulated_dispatcher(profile_device),
        simulated=True,
        data_dir=data_dir,
        network=SimulatedNetwork(profile_device),
        registry=registry,
    )


@dataclass(frozen=True, slots=True)
class FleetOptions:
    """How the simulated devices reach the controller and announce themselves."""

    seed: int = 0
    address_base: str = DEFAULT_ADDRESS_BASE
    data_dir: str | None = None
    enroll_password: str = ""
    controller_fingerprint: str = ""
    insecure: bool = False
    heartbeat: float = 15.0
    reconnect_min: float = 0.5
    reconnect_max: float = 30.0
    #: UDP port of each device's discovery responder (None: no responders).
    discovery_port: int | None = None
    #: AMQP with per-device credentials: each device enrolls at the controller's gateway,
    #: gets its own RabbitMQ user and opens its own connection to this broker URL.
    bus_url: str = ""
    # --- mdp ---
    #: UDP port of each device's diagnostics endpoint on its own address (None: none).
    mdp_port: int | None = None
    mdp_legacy_keys: bool = False
    #: Each device reports to the monitoring host H:P (empty: no reports), as agents do.
    mdp_report_to: str = ""
    mdp_report_interval: float = 60.0
    mdp_report_operations: tuple[str, ...] = ("load_and_memory", "disk_health")


class SimFleet:
    """Starts every device concurrently; ``wait_connected`` has a deadline."""

    def __init__(
        self,
        profile: Profile,
        host: str = "",
        port: int = 0,
        *,
        bus: Bus | None = None,
        options: FleetOptions | None = None,
        **overrides: object,
    ) -> None:
        opts = options or FleetOptions(**overrides)  # type: ignore[arg-type]
        if bus is None and not opts.insecure and opts.data_dir is None:
            raise ValueError("simulated devices need a data dir for their keys (or --insecure)")
        self.options = opts
        self.bus = bus
        self.devices: list[SimulatedDevice] = []
        # Registered once and copied to each device (a test may add a method to one device
        # only): registering reads every installed distribution's entry points, and doing
        # so per device was most of building 1,000 devices.
        registry: MethodRegistry[AgentRuntime] = MethodRegistry()
        register_all(registry)
        for index, entry in enumerate(profile.devices):
            # Each device keeps its state beside its keys: <data-dir>/<uuid>.
            own_dir = None
            if opts.data_dir is not None:
                own_dir = Path(opts.data_dir) / (entry.uuid or device_uuid(entry, index, opts.seed))
            runtime = runtime_for(entry, index, opts.seed, own_dir, registry.copy())
            address = address_for(index, opts.address_base)
            identity = tls = None
            if bus is not None:
                from hwfleet.agent.links.bus import BusLink

                runtime.ipaddr = address  # a bus agent reports its own address

                link: Link = BusLink(
                    runtime,
                    bus,
                    heartbeat=opts.heartbeat,
                    reconnect_min=opts.reconnect_min,
                    reconnect_max=opts.reconnect_max,
                )
            elif opts.bus_url:
                identity, link = self._amqp(runtime, host, port, address)
            else:
                if not opts.insecure:
                    tls = self._tls(runtime, host, port, address, deferred=True)
                link = StreamLink(
                    runtime,
                    host,
                    port,
                    local_address=address,
                    ssl_provider=tls,
                    heartbeat=opts.heartbeat,
                    reconnect_min=opts.reconnect_min,
                    reconnect_max=opts.reconnect_max,
                )
            self.devices.append(SimulatedDevice(index, address, runtime, link, tls, identity))

    def _amqp(
        self, runtime: AgentRuntime, host: str, port: int, address: str
    ) -> tuple[AgentIdentity, Link]:
        from hwfleet.agent.links.amqp import AmqpAgentLink

        identity = self._tls(runtime, host, port, address).identity
        assert identity is not None  # made at once unless deferred
        opts = self.options
        link = AmqpAgentLink(
            runtime,
            opts.bus_url,
            identity=identity,
            controller=(host, port),
            password=opts.enroll_password,
            controller_fingerprint=opts.controller_fingerprint,
            local_address=address,
            heartbeat=opts.heartbeat,
            reconnect_min=opts.reconnect_min,
            reconnect_max=opts.reconnect_max,
        )
        return identity, link

    def _tls(
        self, runtime: AgentRuntime, host: str, port: int, address: str, *, deferred: bool = False
    ) -> AgentTls:
        """The device's TLS; ``deferred``: its key is made at its first connect, not now."""
        from hwfleet.agent.links.tls import AgentTls
        from hwfleet.trust import AgentIdentity

        uuid = runtime.info.uuid
        directory = Path(self.options.data_dir or ".") / uuid

        def identity() -> AgentIdentity:
            return AgentIdentity.load_or_create(directory, uuid)

        if deferred:
            AgentIdentity.check_owner(directory, uuid)  # a wrong directory fails at start

        return AgentTls(
            identity if deferred else identity(),
            host,
            port,
            password=self.options.enroll_password,
            controller_fingerprint=self.options.controller_fingerprint,
            local_address=address,
        )

    async def start(self) -> None:
        if self.options.discovery_port is not None:
            await self._start_responders(self.options.discovery_port)
        if self.options.mdp_port is not None:
            await self._start_mdp(self.options.mdp_port)
        for device in self.devices:
            device.tasks.append(asyncio.create_task(device.link.run(), name=f"sim-{device.index}"))
            if device.responder is not None and (device.tls or device.bus_identity) is not None:
                device.tasks.append(asyncio.create_task(self._sign_when_enrolled(device)))

    async def _start_responders(self, port: int) -> None:
        from hwfleet.agent.discovery import metadata_for
        from hwfleet.discovery import DiscoveryResponder

        for device in self.devices:
            rt, address = device.runtime, device.address
            responder = DiscoveryResponder(
                lambda rt=rt, address=address: metadata_for(rt, address, port),  # type: ignore[misc]
                bind=address,
                port=port,
                group=None,
            )
            try:
                await responder.start()
            except OSError as exc:
                if exc.errno == errno.EADDRINUSE:
                    raise AddressesTakenError(taken_message(address, port, device.index)) from None
                raise
            device.responder = responder

    async def _start_mdp(self, port: int) -> None:
        from hwfleet.mdp.serve import MdpOptions, build_endpoint

        for device in self.devices:
            options = MdpOptions(
                device.address,
                port,
                legacy=self.options.mdp_legacy_keys,
                # Only an authenticated controller link may fetch the key.
                share_key=not self.options.insecure and self.bus is None,
            )
            endpoint = build_endpoint(device.runtime, options)
            try:
                await endpoint.start()
            except OSError as exc:
                # Another simulator (or agent) holds this address's port: the device still
                # runs, as a real agent does, without its diagnostics endpoint.
                log.warning(
                    "device %d: no diagnostics endpoint on %s:%d: %s (--mdp-port or --no-mdp)",
                    device.index,
                    device.address,
                    port,
                    exc.strerror or exc,
                )
                continue
            device.runtime.mdp_port = endpoint.port
            device.mdp = endpoint
        if self.options.mdp_report_to:
            self._start_reporters()

    def _start_reporters(self) -> None:
        from hwfleet.mdp.reports import Reporter

        opts = self.options
        for device in self.devices:
            if device.mdp is None:
                continue
            device.reporter = Reporter(device.mdp, opts.mdp_report_to, opts.mdp_report_interval,
                                       opts.mdp_report_operations)  # fmt: skip
            # Spread a fleet's reports over the interval instead of one burst.
            device.reporter.start(delay=opts.mdp_report_interval * device.index / len(self.devices))

    @staticmethod
    async def _sign_when_enrolled(device: SimulatedDevice) -> None:
        """Replies are marked unsigned until the device has an enrolled key."""
        from hwfleet.agent.discovery import load_signing_key

        await device.link.connected.wait()
        if device.identity is not None and device.responder is not None:
            device.responder.signing_key = load_signing_key(device.identity.key_path)

    async def wait_connected(self, timeout: float) -> int:
        """Wait until every device is connected; returns how many are when time runs out."""
        try:
            async with asyncio.timeout(timeout):
                await asyncio.gather(*(d.link.connected.wait() for d in self.devices))
        except TimeoutError:
            pass
        return sum(d.link.connected.is_set() for d in self.devices)

    async def close(self) -> None:
        for device in self.devices:
            device.link.stop()
        tasks = [t for d in self.devices for t in d.tasks]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for device in self.devices:
            if device.responder is not None:
                await device.responder.close()
            if device.reporter is not None:
                await device.reporter.close()
            if device.mdp is not None:
                await device.mdp.close()
        await asyncio.gather(*(d.runtime.tasks.close() for d in self.devices))
