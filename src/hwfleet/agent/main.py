"""Run one agent process from its settings and a runtime its caller built.

The caller (``hwfleet agent``) builds the runtime: :func:`build_runtime` for
this machine, or :func:`hwfleet.sim.fleet.simulated_runtime` for ``--simulate``,
so the agent never loads the simulator.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from hwfleet.agent.identity import describe_machine, load_or_create_uuid
from hwfleet.agent.runtime import AgentRuntime
from hwfleet.settings import AgentSettings
from hwfleet.types import parse_host_port

if TYPE_CHECKING:
    from hwfleet.agent.access.admin_listener import AdminListener

log = logging.getLogger(__name__)


def build_runtime(settings: AgentSettings) -> AgentRuntime:
    """The runtime of this machine: its own hardware, its saved uuid, its live network."""
    from hwfleet.agent.hardware import default_dispatcher

    hardware = default_dispatcher()
    device_uuid = load_or_create_uuid(settings.data_dir)
    return AgentRuntime(
        describe_machine(device_uuid, hardware.inventory()), hardware, data_dir=settings.data_dir
    )


async def run_agent(settings: AgentSettings, runtime: AgentRuntime, stop: asyncio.Event) -> None:
    """Serve the controller (and the admin listener, discovery) until ``stop`` is set."""
    if settings.transport not in ("stream", "amqp"):
        raise ValueError(f"--transport must be stream or amqp, not {settings.transport!r}")
    from hwfleet.mdp.serve import MdpOptions, mdp_serving

    runtime.settings = settings
    diagnostics = MdpOptions.from_settings(settings, share_key=_link_authenticated(settings))
    async with admin_listening(settings, runtime), mdp_serving(runtime, diagnostics):
        if settings.transport == "stream":
            await _run_stream(settings, runtime, stop)
        else:
            await _run_bus(settings, runtime, stop)


def _link_authenticated(settings: AgentSettings) -> bool:
    """May the diagnostics key go to the controller link? Only when the link is mTLS or this
    device's own bus user: never to an --insecure peer or a bus user every device shares."""
    if settings.insecure:
        return False
    if settings.transport == "stream":
        return True
    from hwfleet.agent.links.bus_credentials import wants_own_credentials

    return wants_own_credentials(
        settings.data_dir, password=settings.enroll_password, token=settings.enroll_token
    )


@contextlib.asynccontextmanager
async def admin_listening(
    settings: AgentSettings, runtime: AgentRuntime
) -> AsyncIterator[AdminListener | None]:
    """Serve the device admin listener (``--admin-listen``) while the agent runs."""
    if not settings.admin_listen:
        yield None
        return
    from hwfleet.agent.access.admin_listener import AdminListener
    from hwfleet.trust import AgentIdentity

    host, port = parse_host_port(settings.admin_listen, allow_any_port=True)
    identity = AgentIdentity.load_or_create(Path(settings.data_dir), runtime.info.uuid)
    listener = AdminListener(runtime, identity, host=host, port=port)
    await listener.start()
    log.info("device key %s (clients pin it)", identity.fingerprint)
    try:
        yield listener
    finally:
        await listener.close()


async def _run_stream(settings: AgentSettings, runtime: AgentRuntime, stop: asyncio.Event) -> None:
    from hwfleet.agent.links.stream import StreamLink

    host, port = parse_host_port(settings.controller)
    provider = None
    if settings.insecure:
        log.warning("INSECURE: plain TCP to the controller, no authentication (--insecure)")
    else:
        # Enrollment (key, CSR, certificate checks) runs in a child process: issue 18.
        from hwfleet.agent.links.enroll_child import ChildEnrolledTls

        provider = ChildEnrolledTls(
            Path(settings.data_dir),
            runtime.info.uuid,
            host,
            port,
            password=settings.enroll_password,
            token=settings.enroll_token,
            controller_fingerprint=settings.controller_fingerprint,
            timeout=settings.connect_timeout,
        )
    link = StreamLink(
        runtime,
        host,
        port,
        ssl_provider=provider,
        heartbeat=settings.heartbeat_interval,
        reconnect_min=settings.reconnect_min,
        reconnect_max=settings.reconnect_max,
        connect_timeout=settings.connect_timeout,
    )
    log.info(
        "agent %s (%s) connecting to %s:%d", runtime.info.uuid, runtime.info.serial, host, port
    )
    running = asyncio.create_task(link.run())
    key_path = None if provider is None else provider.key_path
    enrolled = (lambda: provider.is_enrolled) if provider else (lambda: False)
    async with announced(settings, runtime, host, key_path, enrolled, link.connected):
        try:
            await stop.wait()
        finally:
            link.stop()
            running.cancel()
            await asyncio.gather(running, return_exceptions=True)
            await runtime.tasks.close()


@contextlib.asynccontextmanager
async def announced(
    settings: AgentSettings,
    runtime: AgentRuntime,
    controller_host: str,
    key_path: Path | None,
    enrolled: Callable[[], bool],
    connected: asyncio.Event,
) -> AsyncIterator[None]:
    """Answer discovery (and DNS-SD when asked) while the agent runs."""
    if not settings.discovery:
        yield
        return
    from hwfleet.agent.discovery import local_ip_towards, start_responder

    ipaddr = local_ip_towards(controller_host)
    responder = await start_responder(
        runtime,
        ipaddr=ipaddr,
        port=settings.discovery_port,
        group=settings.discovery_group,
        interface=settings.discovery_interface,
        key_path=key_path if enrolled() else None,
    )

    async def sign_after_enrollment() -> None:
        from typing import cast

        from hwfleet.agent.discovery import LazySigningKey

        await connected.wait()
        if key_path is not None and enrolled() and responder.signing_key is None:
            responder.signing_key = cast(Any, LazySigningKey(key_path))

    signer = asyncio.create_task(sign_after_enrollment())
    advertiser = None
    if settings.dnssd:
        from hwfleet.agent.discovery import metadata_for
        from hwfleet.discovery.dnssd import DnsSdAdvertiser

        advertiser = DnsSdAdvertiser(
            metadata_for(runtime, ipaddr, settings.discovery_port),
            port=settings.discovery_port,
            interfaces=[ipaddr],
        )
        await advertiser.start()
    try:
        yield
    finally:
        signer.cancel()
        if advertiser is not None:
            await advertiser.close()
        await responder.close()


async def _run_bus(settings: AgentSettings, runtime: AgentRuntime, stop: asyncio.Event) -> None:
    from hwfleet.agent.links.bus import BusLink
    from hwfleet.bus import open_bus

    if not settings.bus:
        raise ValueError("--transport amqp needs --bus amqp://user:password@host/")
    from hwfleet.agent.links.bus_credentials import wants_own_credentials

    if not settings.insecure and wants_own_credentials(
        settings.data_dir, password=settings.enroll_password, token=settings.enroll_token
    ):
        await _run_bus_as_device(settings, runtime, stop)
        return
    bus = open_bus(settings.bus)
    await bus.start()
    link = BusLink(
        runtime,
        bus,
        heartbeat=settings.heartbeat_interval,
        reconnect_min=settings.reconnect_min,
        reconnect_max=settings.reconnect_max,
    )
    log.info("agent %s (%s) on the bus", runtime.info.uuid, runtime.info.serial)
    running = asyncio.create_task(link.run())
    broker = urlsplit(settings.bus).hostname or "127.0.0.1"
    async with announced(settings, runtime, broker, None, lambda: False, link.connected):
        try:
            await stop.wait()
        finally:
            link.stop()
            await asyncio.gather(running, return_exceptions=True)
            await runtime.tasks.close()
            await bus.close()


async def _run_bus_as_device(
    settings: AgentSettings, runtime: AgentRuntime, stop: asyncio.Event
) -> None:
    """AMQP with this device's own bus user, got from the controller (enrolling if needed)."""
    from hwfleet.agent.links.amqp import AmqpAgentLink
    from hwfleet.trust import AgentIdentity

    identity = AgentIdentity.load_or_create(Path(settings.data_dir), runtime.info.uuid)
    link = AmqpAgentLink(
        runtime,
        settings.bus,
        identity=identity,
        controller=parse_host_port(settings.controller),
        password=settings.enroll_password,
        token=settings.enroll_token,
        controller_fingerprint=settings.controller_fingerprint,
        heartbeat=settings.heartbeat_interval,
        reconnect_min=settings.reconnect_min,
        reconnect_max=settings.reconnect_max,
    )
    log.info("agent %s (%s) on the bus, own credentials", runtime.info.uuid, runtime.info.serial)
    running = asyncio.create_task(link.run())
    broker = urlsplit(settings.bus).hostname or "127.0.0.1"
    key_path = identity.key_path
    async with announced(
        settings, runtime, broker, key_path, lambda: identity.is_enrolled, link.connected
    ):
        try:
            await stop.wait()
        finally:
            link.stop()
            await asyncio.gather(running, return_exceptions=True)
            await runtime.tasks.close()
