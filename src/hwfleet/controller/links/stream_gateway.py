"""The stream gateway: agents connect here and speak line-JSON (TLS when configured)."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import ssl
from collections.abc import Callable
from typing import Any

from hwfleet.controller.devices import DeviceRegistry
from hwfleet.controller.links.agent_methods import AgentContext, AgentMethods
from hwfleet.controller.links.connecting import Slot
from hwfleet.controller.links.guard import AnonymousGuard, AnonymousLimits, LinkPacing, LinkReader
from hwfleet.controller.links.listener import KnockListener
from hwfleet.protocol.session import Session
from hwfleet.protocol.stream import StreamChannel, pump
from hwfleet.types import LINK_TIMEOUT

log = logging.getLogger(__name__)

#: An enrolling link gets this many more handshake timeouts before it is closed.
ENROLLING_GRACE = 4

#: Inspect a fresh TLS connection (client certificate) before any message is read.
ConnectionHook = Callable[[AgentContext, asyncio.StreamWriter], None]


class StreamGateway:
    """Accepts agent connections and runs one protocol session per connection."""

    def __init__(
        self,
        methods: AgentMethods,
        devices: DeviceRegistry,
        *,
        host: str,
        port: int,
        ssl_context: ssl.SSLContext | None = None,
        handshake_timeout: float = LINK_TIMEOUT,
        call_timeout: float = 10.0,
        on_connect: ConnectionHook | None = None,
        guard: AnonymousGuard | None = None,
    ) -> None:
        """``guard``: limits for links that have not identified themselves (defaults if None)."""
        self._methods = methods
        self._devices = devices
        self._host = host
        self._port = port
        self._ssl = ssl_context
        self._handshake_timeout = handshake_timeout
        self._call_timeout = call_timeout
        self._on_connect = on_connect
        self.guard = guard or AnonymousGuard(AnonymousLimits())
        self._server: asyncio.Server | None = None
        self._listener: KnockListener | None = None
        self._handlers: set[asyncio.Task[Any]] = set()

    @property
    def address(self) -> tuple[str, int]:
        if self._listener is not None:
            sock = self._listener.sockets[0].getsockname()
        else:
            assert self._server is not None, "gateway not started"
            sock = self._server.sockets[0].getsockname()
        return (sock[0], sock[1])

    async def start(self) -> None:
        loop = asyncio.get_running_loop()

        def protocol(
            reserved: bool = False, slot: Slot | None = None
        ) -> asyncio.StreamReaderProtocol:
            # asyncio.start_server, but with a reader whose limit can change (LinkReader).
            reader = LinkReader(limit=self.guard.limits.line_limit + 1)
            return asyncio.StreamReaderProtocol(
                reader, functools.partial(self._serve, reserved=reserved, slot=slot)
            )

        if self._ssl is not None:
            # Accepts itself so that an enrollment knock is answered before any TLS.
            self._listener = KnockListener(
                self._host,
                self._port,
                self._ssl,
                self.guard,
                protocol,
                # A slow peer (an emulated VM) needs the handshake_timeout setting here too.
                handshake_timeout=self._handshake_timeout,
                # A closing link waits this long for the peer's close_notify: not asyncio's
                # 30 s, or links refused in a flood would hold their buffers that long.
                shutdown_timeout=5.0,
            )
            await self._listener.start()
        else:
            self._server = await loop.create_server(protocol, self._host, self._port, backlog=4096)
        log.info(
            "agent gateway listening on %s:%d (%s)",
            *self.address,
            "TLS" if self._ssl else "plain TCP",
        )

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        if self._listener is not None:
            await self._listener.close()
        for task in list(self._handlers):
            task.cancel()
        await asyncio.gather(*self._handlers, return_exceptions=True)
        self.guard.close()
        if self._server is not None:
            with contextlib.suppress(Exception):
                await self._server.wait_closed()

    async def _serve(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        *,
        reserved: bool,
        slot: Slot | None,
    ) -> None:
        """``reserved``: the link knocked before TLS and holds an anonymous slot already;
        ``slot``: its place among the connecting links, given back once it identifies."""
        assert isinstance(reader, LinkReader)
        # asyncio (3.11) logs a cancelled connection task as an error; shutdown cancels
        # them on purpose, so cancellation ends the handler quietly here.
        with contextlib.suppress(asyncio.CancelledError):
            try:
                await self._session(reader, writer, reserved, slot)
            finally:
                if slot is not None:
                    slot.release()

    async def _session(
        self, reader: LinkReader, writer: asyncio.StreamWriter, reserved: bool, slot: Slot | None
    ) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        channel = StreamChannel(writer)
        peer = writer.get_extra_info("peername")
        ipaddr = peer[0] if isinstance(peer, tuple) else str(peer)
        ctx = AgentContext(ipaddr=ipaddr, transport="stream", drop=writer.close)
        if slot is not None:
            ctx.on_identified = slot.release
        session: Session[AgentContext] = Session(
            channel.send,
            self._methods.registry,
            ctx,
            peer=channel.peername(),
            default_timeout=self._call_timeout,
            send_now=channel.send_now,
        )
        ctx.session = session
        watchdog = asyncio.get_running_loop().call_later(
            self._handshake_timeout, self._expect_handshake, ctx, writer
        )
        pacing: LinkPacing | None = None
        try:
            if self._on_connect is not None:
                self._on_connect(ctx, writer)
            if slot is not None and ctx.cert_uuid is None:
                # No certificate: an anonymous link from here on, limited by the guard; a
                # flood of them must not hold the slots reconnecting devices wait for.
                slot.release()
            pacing = LinkPacing(
                self.guard, ctx, reader, ipaddr, writer.transport, reserved=reserved
            )
            reserved = False  # the pacing owns the slot now
            if pacing.refusal is not None:
                if isinstance(writer.transport, asyncio.Transport):
                    writer.transport.pause_reading()  # what it sends next stays in the kernel
                # Summed up by the guard: a storm would otherwise log one line per link.
                await session.fatal(pacing.refusal, quiet=pacing.summed_up)
                return
            await pump(reader, session, pacing=pacing)
        except Exception:
            log.exception("connection from %s failed", channel.peername())
        finally:
            if reserved:  # the connection hook failed before the pacing took the slot
                self.guard.release(ipaddr)
            watchdog.cancel()
            session.close()
            if ctx.uuid is not None:
                await self._devices.detach(ctx.uuid, session, "disconnected")
            await channel.close()
            if pacing is not None:
                pacing.ended()
            self._handlers.discard(task)

    def _expect_handshake(
        self, ctx: AgentContext, writer: asyncio.StreamWriter, first: bool = True
    ) -> None:
        if ctx.uuid is not None or writer.is_closing():
            return
        if (ctx.extra.get("enrolling") or ctx.cert_uuid is not None) and first:
            # Enrolling takes a key exchange and perhaps an operator's decision: more time,
            # but not forever, or unauthenticated peers could hold connections open at will.
            # A link with a certificate of our CA may be waiting on us (its handshake queued
            # behind thousands in a reconnect storm): closing it would only cost another
            # TLS handshake.
            asyncio.get_running_loop().call_later(
                ENROLLING_GRACE * self._handshake_timeout,
                self._expect_handshake,
                ctx,
                writer,
                False,
            )
            return
        log.warning("%s did not authenticate in time: closing", ctx.ipaddr)
        writer.close()
