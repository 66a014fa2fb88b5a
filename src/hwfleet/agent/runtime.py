"""The agent: identity, hardware managers, command handlers and long tasks, carrier-free.

A link (:mod:`hwfleet.agent.links.stream` for streams, the AMQP carrier for the bus)
attaches a session; the runtime answers through whichever link is current.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from hwfleet.agent.identity import DeviceInfo
from hwfleet.agent.localstate import LocalState
from hwfleet.agent.peers import PeerSessions
from hwfleet.agent.status import StatusTracker
from hwfleet.agent.tasks import AgentTasks
from hwfleet.protocol import methods
from hwfleet.protocol.inventory import Inventory
from hwfleet.protocol.methods import MethodRegistry
from hwfleet.protocol.session import Session

if TYPE_CHECKING:
    from hwfleet.agent.hardware import HardwareDispatcher
    from hwfleet.agent.netconfig.backend import NetworkBackend
    from hwfleet.settings import AgentSettings


class AgentRuntime:
    """Everything an agent is, independent of how it reaches the controller."""

    def __init__(
        self,
        info: DeviceInfo,
        hardware: HardwareDispatcher,
        *,
        simulated: bool = False,
        data_dir: str | os.PathLike[str] | None = None,
        network: NetworkBackend | None = None,
        registry: MethodRegistry[AgentRuntime] | None = None,
    ) -> None:
        """``data_dir``: where the device keeps its name, trust list and password (None: memory).

        ``network``: where network settings go (default: the machine's own, live).
        ``registry``: the commands, already registered (``hwfleet sim`` registers once and
        gives each device a copy: registering reads every installed distribution's entry
        points, which was most of building a thousand simulated devices). None: here.
        """
        from hwfleet.agent.commands import register_all

        #: The device's own documents (device.* commands); a saved name beats the hardware's.
        self.local = LocalState(data_dir)
        self.info = info
        self.info.name = self.local.saved_name() or info.name
        self.hardware = hardware
        self.simulated = simulated
        self._network = network
        self.started = time.monotonic()
        #: The one status rule (st_id, st_ts, st_prog, error_label): see hwfleet.agent.status.
        self.status = StatusTracker()
        self.status.set_maintenance(self.local.saved_maintenance())
        self._scans = 0
        self.tasks = AgentTasks(self.status)
        self.registry: MethodRegistry[AgentRuntime] = (
            MethodRegistry() if registry is None else registry
        )
        self.session: Session[AgentRuntime] | None = None
        #: Live sessions of admin-listener peers, closed when their key leaves the trust list.
        self.peers = PeerSessions()
        #: The settings the agent runs with (``run_agent`` sets them; None: defaults).
        self.settings: AgentSettings | None = None
        #: This device's own address, for carriers whose controller cannot see it (AMQP).
        self.ipaddr = ""
        if registry is None:
            register_all(self.registry)
        # --- mdp --- set when the diagnostics endpoint starts (hwfleet.mdp.serve)
        self.mdp_key: bytes | None = None
        self.mdp_port = 0

    @property
    def network(self) -> NetworkBackend:
        """Where network settings go; the live one is made (and its modules imported) when a
        ``device.network.*`` command first needs it, not at start (issue 18)."""
        if self._network is None:
            from hwfleet.agent.netconfig.backend import LiveNetwork

            self._network = LiveNetwork()
        return self._network

    def attach(self, session: Session[AgentRuntime] | None) -> None:
        """The link calls this when a session is identified (or lost: ``None``)."""
        self.session = session
        self.tasks.attach(session)

    def handshake(self) -> dict[str, Any]:
        inv = self._macs()
        return {
            "uuid": self.info.uuid,
            "serial": self.info.serial,
            "name": self.info.name,
            "model_id": self.info.model_id,
            "version": self.info.version,
            "macs": inv,
            "st_id": self.st_id(),
            "tasks": self.tasks.running(),
            **({"ipaddr": self.ipaddr} if self.ipaddr else {}),
        }

    async def inventory(self) -> Inventory:
        """Simulated hardware answers inline; real sysfs reads go to a thread."""
        if self.simulated:
            return self.hardware.inventory()
        return await asyncio.to_thread(self.hardware.inventory)

    def st_id(self) -> int:
        return self.status.status.st_id

    @contextlib.contextmanager
    def scanning(self) -> Iterator[None]:
        """Reports -2 while at least one scan is being answered."""
        self._scans += 1
        self.status.set_scanning(True)
        try:
            yield
        finally:
            self._scans -= 1
            self.status.set_scanning(self._scans > 0)

    def uptime(self) -> float:
        return time.monotonic() - self.started

    async def log(self, level: str, msg: str, **fields: Any) -> None:
        """Send a structured log line to the controller (dropped when offline)."""
        session = self.session
        if session is not None and not session.closed:
            await session.cast(methods.LOG, {"level": level, "msg": msg, "fields": fields})

    def _macs(self) -> list[str]:
        try:
            # Only the NICs: a full inventory (PCI, disks, DMI…) on every reconnect is wasted.
            return [nic.mac for nic in self.hardware.list_nics() if nic.mac]
        except Exception:
            return []
