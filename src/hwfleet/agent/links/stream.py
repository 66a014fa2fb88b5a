"""The agent's stream link: connect, identify, heartbeat, and reconnect with backoff."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import ssl
from collections.abc import Awaitable, Callable

from hwfleet.agent.links.backoff import Backoff, SystemJitter
from hwfleet.agent.runtime import AgentRuntime
from hwfleet.protocol import methods
from hwfleet.protocol.framing import STREAM_LIMIT
from hwfleet.protocol.session import Session
from hwfleet.protocol.stream import StreamChannel, pump
from hwfleet.trust.enroll_batch import retry_after
from hwfleet.types import LINK_TIMEOUT

log = logging.getLogger(__name__)

#: Seconds over which a device spreads its first reconnect after an established link ends.
REJOIN_SPREAD = 5.0
#: The ``handshake`` reply is waited for this many call timeouts.
HANDSHAKE_WAIT_FACTOR = 3
#: Gives the TLS context for the next attempt (None: plain TCP, only with --insecure).
SslProvider = Callable[[], Awaitable[ssl.SSLContext | None]]


def _server_name(host: str, context: ssl.SSLContext) -> str:
    """The TLS server name for ``host``: none (``""``) for an IP address not checked by name.

    OpenSSL sends no SNI for an address anyway, and asyncio encodes any name it is
    given with the ``idna`` codec, whose import (``stringprep``, ``unicodedata``) would
    stay resident in the agent for nothing (issue 18).
    """
    if context.check_hostname:
        return host
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return host
    return ""


class StreamLink:
    """Keeps one session to the controller alive for as long as the agent runs."""

    def __init__(
        self,
        runtime: AgentRuntime,
        host: str,
        port: int,
        *,
        ssl_provider: SslProvider | None = None,
        local_address: str | None = None,
        heartbeat: float = 15.0,
        reconnect_min: float = 0.5,
        reconnect_max: float = 30.0,
        call_timeout: float = 10.0,
        connect_timeout: float = LINK_TIMEOUT,
        rejoin_spread: float = REJOIN_SPREAD,
    ) -> None:
        self.runtime = runtime
        self.host = host
        self.port = port
        self._ssl_provider = ssl_provider
        self._local = local_address
        self._heartbeat = heartbeat
        self._backoff = Backoff(reconnect_min, reconnect_max)
        self._rejoin_spread = rejoin_spread
        self._jitter = SystemJitter()
        self._call_timeout = call_timeout
        self._connect_timeout = connect_timeout
        self.connected = asyncio.Event()
        self.connects = 0
        self.last_error: str | None = None
        self._stopping = False
        self._writer: asyncio.StreamWriter | None = None

    async def run(self) -> None:
        """Connect forever; returns only after :meth:`stop`."""
        while not self._stopping:
            busy: float | None = None
            connects = self.connects
            try:
                await self._session_once()
            except (OSError, ConnectionError, TimeoutError, ssl.SSLError) as exc:
                self._note_failure(str(exc) or type(exc).__name__)
                busy = retry_after(str(exc))
            except Exception as exc:  # a refusal from the controller, a bad reply
                self._note_failure(f"{type(exc).__name__}: {exc}")
                busy = retry_after(str(exc))
            if self._stopping:
                break
            if self.connects > connects:
                # A link that was up has ended: the whole fleet lost it at once (issue 18).
                self._backoff.spread(self._rejoin_spread)
            if busy is not None:
                # The controller said when to come back (an enrollment storm): do, spread
                # by jitter so the devices it turned away do not return all at once.
                delay = busy * (0.5 + self._jitter.random())
            else:
                delay = self._backoff.next()
            await asyncio.sleep(delay)  # deliberate wait between attempts

    def stop(self) -> None:
        self._stopping = True
        self._drop()

    def _drop(self) -> None:
        """Close the socket so the reader wakes up with EOF."""
        if self._writer is not None:
            self._writer.close()

    def _note_failure(self, reason: str) -> None:
        if reason != self.last_error:
            log.warning("controller %s:%d: %s; reconnecting", self.host, self.port, reason)
        self.last_error = reason

    async def _session_once(self) -> None:
        local = (self._local, 0) if self._local else None
        context = await self._ssl_provider() if self._ssl_provider else None
        async with asyncio.timeout(self._connect_timeout):
            reader, writer = await asyncio.open_connection(
                self.host,
                self.port,
                limit=STREAM_LIMIT,
                ssl=context,
                local_addr=local,
                server_hostname=None if context is None else _server_name(self.host, context),
            )
        self._writer = writer
        channel = StreamChannel(writer)
        session: Session[AgentRuntime] = Session(
            channel.send,
            self.runtime.registry,
            self.runtime,
            peer=f"{self.host}:{self.port}",
            default_timeout=self._call_timeout,
        )
        reading = asyncio.create_task(pump(reader, session))
        beating: asyncio.Task[None] | None = None
        try:
            # The TLS handshake is done and paid for: a controller slow to answer (thousands
            # rejoining after a restart) is waited for, not left for a new TLS handshake.
            await session.call(
                methods.HANDSHAKE,
                self.runtime.handshake(),
                timeout=HANDSHAKE_WAIT_FACTOR * self._call_timeout,
            )
            self._backoff.reset()
            self.connects += 1
            self.last_error = None
            self.runtime.attach(session)
            self.connected.set()
            beating = asyncio.create_task(self._beat(session))
            await reading
        finally:
            self.connected.clear()
            self.runtime.attach(None)
            session.close()
            for task in (beating, reading):
                if task is not None:
                    task.cancel()
            await asyncio.gather(*(t for t in (beating, reading) if t), return_exceptions=True)
            with contextlib.suppress(Exception):
                await channel.close()

    async def _beat(self, session: Session[AgentRuntime]) -> None:
        """Heartbeats keep presence; a missed one means the link is dead."""
        while not session.closed:
            await asyncio.sleep(self._heartbeat)  # the heartbeat period itself
            try:
                await session.call(methods.PING, {}, timeout=self._call_timeout)
            except Exception as exc:
                log.warning("heartbeat failed (%s): reconnecting", exc)
                self._drop()
                return
