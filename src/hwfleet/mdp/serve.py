"""Running the endpoint (and the periodic reporter) beside an agent.

Used by ``hwfleet agent`` (``--mdp-listen``, default 0.0.0.0:12345) and by ``hwfleet sim``
(each simulated device on its own loopback address). The machine key is loaded or
made here and handed to the runtime, whose ``mdp.key`` command gives it to the
controller over the authenticated link.

The agent binds its diagnostics socket at start (a port in use is reported then) but
builds the endpoint behind it — the operations and their plugins, the cluster member,
its folder sync — when the first datagram arrives: an agent nobody queries never loads
them (issue 18: 0.1 to 0.3 MB of an idle agent). With ``--mdp-report-to`` the reporter
runs operations from the start, so the endpoint is built at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import msgspec

from hwfleet.mdp.keys import load_or_create_key
from hwfleet.mdp.sync_config import SyncConfig

if TYPE_CHECKING:
    from hwfleet.mdp.endpoint import MdpEndpoint
    from hwfleet.mdp.runtime import MachineRuntime
    from hwfleet.settings import AgentSettings

log = logging.getLogger(__name__)


# A struct, not a dataclass: every agent builds one at start, and ``dataclasses`` would
# stay resident for it (issue 18); msgspec is loaded anyway.
class MdpOptions(msgspec.Struct, frozen=True):
    bind: str
    port: int
    legacy: bool = False
    report_to: str = ""
    report_interval: float = 60.0
    report_operations: tuple[str, ...] = ()
    #: Hand the key to the controller link (``mdp.key``); off when that link is not
    #: authenticated (``--insecure``, a shared bus user).
    share_key: bool = True
    sync: SyncConfig | None = None

    @classmethod
    def from_settings(cls, settings: AgentSettings, *, share_key: bool) -> MdpOptions | None:
        """``share_key``: the controller link is authenticated (the agent decides)."""
        if not settings.mdp_listen:
            return None
        from hwfleet.types import parse_host_port

        host, port = parse_host_port(settings.mdp_listen, allow_any_port=True)
        return cls(
            bind=host,
            port=port,
            legacy=settings.mdp_legacy_keys,
            share_key=share_key,
            sync=_sync_config(settings),
            report_to=settings.mdp_report_to,
            report_interval=settings.mdp_report_interval,
            report_operations=tuple(
                n.strip() for n in settings.mdp_report_operations.split(",") if n.strip()
            ),
        )


def _sync_config(settings: AgentSettings) -> SyncConfig | None:
    if not settings.mdp_cluster_sync:
        return None
    data = Path(settings.data_dir)
    return SyncConfig(
        settings.mdp_cluster_ssh_key or str(data / "cluster_ssh_key"),
        settings.mdp_cluster_known_hosts or str(data / "known_hosts"),
        settings.mdp_cluster_user,
        settings.mdp_cluster_interval,
        authorized_keys=settings.mdp_cluster_authorized_keys
        or os.path.expanduser("~/.ssh/authorized_keys"),
        host_key=settings.mdp_cluster_host_key,
    )


def build_endpoint(runtime: MachineRuntime, options: MdpOptions) -> MdpEndpoint:
    """The endpoint for ``runtime``; its key lives in the runtime's data dir (memory without)."""
    return _endpoint(runtime, options, _key(runtime, options))


def _key(runtime: MachineRuntime, options: MdpOptions) -> bytes:
    import secrets

    data_dir = runtime.local.data_dir
    key = load_or_create_key(data_dir) if data_dir is not None else secrets.token_bytes(32)
    if options.share_key:
        runtime.mdp_key = key
    return key


def _endpoint(runtime: MachineRuntime, options: MdpOptions, key: bytes) -> MdpEndpoint:
    from hwfleet.mdp.cluster import ClusterMember
    from hwfleet.mdp.endpoint import MdpEndpoint
    from hwfleet.mdp.operations import OperationContext, load_operations
    from hwfleet.mdp.sync import FolderSync

    data_dir = runtime.local.data_dir
    ops = load_operations()
    context = OperationContext(
        ops, runtime=runtime, data_dir=None if data_dir is None else str(data_dir)
    )
    member = ClusterMember(context, FolderSync(options.sync))
    return MdpEndpoint(
        key,
        ops,
        bind=options.bind,
        port=options.port,
        legacy=options.legacy,
        context=context,
        cluster=member.handle,
    )


class _FirstDatagram(asyncio.DatagramProtocol):
    """The bound diagnostics socket; builds the endpoint when its first datagram arrives."""

    def __init__(self, build: Callable[[], MdpEndpoint]) -> None:
        self._build = build
        self.endpoint: MdpEndpoint | None = None
        self.transport: asyncio.DatagramTransport | None = None
        self.closed = asyncio.get_running_loop().create_future()
        #: The endpoint could not be built (logged once); datagrams since are counted.
        self.broken = False
        self.dropped = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(None)

    def datagram_received(self, data: bytes, addr: tuple[str | Any, ...]) -> None:
        if self.endpoint is None:
            if self.broken:
                self.dropped += 1
                return
            assert self.transport is not None  # connection_made comes first
            try:
                endpoint = self._build()
            except Exception:
                # Raised here it would reach asyncio's handler with a traceback for every
                # datagram anyone sends; said once, and the agent's other work goes on.
                self.broken, self.dropped = True, 1
                log.exception("diagnostics endpoint could not be built; its datagrams are dropped")
                return
            endpoint.attach(self.transport)
            self.endpoint = endpoint
        self.endpoint.received(data, (str(addr[0]), int(addr[1])))

    def error_received(self, exc: Exception) -> None:
        if self.endpoint is not None:
            self.endpoint.counters["socket_error"] += 1


@contextlib.asynccontextmanager
async def mdp_serving(runtime: MachineRuntime, options: MdpOptions | None) -> AsyncIterator[None]:
    """Serve diagnostics while the agent runs; a port in use is logged, the agent carries on."""
    if options is None:
        yield
        return
    key = _key(runtime, options)
    if options.report_to:
        async with _reporting(runtime, options, key):
            yield
        return
    first = _FirstDatagram(lambda: _endpoint(runtime, options, key))
    try:
        transport, _ = await asyncio.get_running_loop().create_datagram_endpoint(
            lambda: first, local_addr=(options.bind, options.port)
        )
    except OSError as exc:
        _not_started(options, exc)
        yield
        return
    runtime.mdp_port = int(transport.get_extra_info("sockname")[1])
    _warn_legacy(options)
    try:
        yield
    finally:
        if first.endpoint is not None:
            await first.endpoint.close()
        transport.close()
        await first.closed  # the socket is released when the agent's serving ends


@contextlib.asynccontextmanager
async def _reporting(
    runtime: MachineRuntime, options: MdpOptions, key: bytes
) -> AsyncIterator[None]:
    """The endpoint built at start, and the reporter that uses it."""
    from hwfleet.mdp.reports import Reporter

    endpoint = _endpoint(runtime, options, key)
    try:
        await endpoint.start()
    except OSError as exc:
        _not_started(options, exc)
        yield
        return
    runtime.mdp_port = endpoint.port
    _warn_legacy(options)
    reporter = Reporter(endpoint, options.report_to, options.report_interval,
                        options.report_operations)  # fmt: skip
    reporter.start()
    try:
        yield
    finally:
        await reporter.close()
        await endpoint.close()


def _not_started(options: MdpOptions, exc: OSError) -> None:
    reason = "in use" if exc.errno == errno.EADDRINUSE else exc.strerror
    log.error(
        "diagnostics endpoint not started: UDP %s:%d %s (set --mdp-listen or "
        "HWFLEET_MDP_LISTEN; empty turns it off)",
        options.bind,
        options.port,
        reason,
    )


def _warn_legacy(options: MdpOptions) -> None:
    if options.legacy:
        log.warning("MDP version 1.0 accepted: the machine key travels in every request")
