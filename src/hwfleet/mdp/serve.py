"""Running the endpoint (and the periodic reporter) beside an agent.

Used by ``hwfleet agent`` (``--mdp-listen``, default 0.0.0.0:12345) and by ``hwfleet sim``
(each simulated device on its own loopback address). The machine key is loaded or
made here and handed to the runtime, whose ``mdp.key`` command gives it to the
controller over the authenticated link.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from hwfleet.mdp.endpoint import MdpEndpoint
from hwfleet.mdp.keys import load_or_create_key
from hwfleet.mdp.operations import OperationContext, load_operations
from hwfleet.mdp.sync import FolderSync, SyncConfig

if TYPE_CHECKING:
    from hwfleet.mdp.runtime import MachineRuntime
    from hwfleet.settings import AgentSettings

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class MdpOptions:
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
    import secrets

    data_dir = runtime.local.data_dir
    key = load_or_create_key(data_dir) if data_dir is not None else secrets.token_bytes(32)
    if options.share_key:
        runtime.mdp_key = key
    ops = load_operations()
    context = OperationContext(
        ops, runtime=runtime, data_dir=None if data_dir is None else str(data_dir)
    )
    from hwfleet.mdp.cluster import ClusterMember

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


@contextlib.asynccontextmanager
async def mdp_serving(
    runtime: MachineRuntime, options: MdpOptions | None
) -> AsyncIterator[MdpEndpoint | None]:
    """Serve diagnostics while the agent runs; a port in use is logged, the agent carries on."""
    if options is None:
        yield None
        return
    endpoint = build_endpoint(runtime, options)
    try:
        await endpoint.start()
    except OSError as exc:
        reason = "in use" if exc.errno == errno.EADDRINUSE else exc.strerror
        log.error(
            "diagnostics endpoint not started: UDP %s:%d %s (set --mdp-listen or "
            "HWFLEET_MDP_LISTEN; empty turns it off)",
            options.bind,
            options.port,
            reason,
        )
        yield None
        return
    runtime.mdp_port = endpoint.port
    if options.legacy:
        log.warning("MDP version 1.0 accepted: the machine key travels in every request")
    reporter = None
    if options.report_to:
        from hwfleet.mdp.reports import Reporter

        reporter = Reporter(endpoint, options.report_to, options.report_interval,
                            options.report_operations)  # fmt: skip
        reporter.start()
    try:
        yield endpoint
    finally:
        if reporter is not None:
            await reporter.close()
        await endpoint.close()
