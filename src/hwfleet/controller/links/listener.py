"""The agent port's TLS listener, which answers an enrollment knock before any TLS (issue 18).

``loop.create_server(ssl=...)`` starts a TLS handshake on every connection it
accepts, so a link refused for lack of anonymous slots had already cost a full
handshake. This listener accepts connections itself and peeks at the first
bytes: a TLS ClientHello (every enrolled device, every agent that does not
knock) goes to TLS as before; the enrollment knock
(:mod:`hwfleet.trust.knock`) is answered in plain text — ``GO`` with an
anonymous slot reserved for the connection, which then starts TLS, or
``BUSY … retry after N s`` and the connection is closed, costing the
controller an accept, two small reads and a write.

A peer that sends nothing (or half a knock) is closed after the handshake
timeout, as TLS would have closed it. A TLS link waits for one of the
:class:`~hwfleet.controller.links.connecting.ConnectSlots` before its handshake
starts, so a reconnect storm is worked through 128 TLS handshakes at a time
instead of all at once (see that module).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
from collections.abc import Callable, Coroutine

from hwfleet.controller.links.connecting import ConnectSlots, Slot, peer_still_there
from hwfleet.controller.links.guard import AnonymousGuard
from hwfleet.trust.knock import GO, KNOCK, busy_line
from hwfleet.trust.ratelimit import source_key

log = logging.getLogger(__name__)

#: Seconds accepting pauses after accept() fails for lack of descriptors or memory.
ACCEPT_RETRY_DELAY = 1.0

#: Builds the protocol of one accepted link; the flag says a knock reserved its anonymous
#: slot; the Slot (None for a knocked link) is its place among the connecting, to release
#: once it has identified itself or ended.
ProtocolFactory = Callable[[bool, Slot | None], asyncio.Protocol]


class KnockListener:
    """Listens on host:port; hands TLS links to ``factory``, answers knocks itself."""

    def __init__(
        self,
        host: str,
        port: int,
        ssl_context: ssl.SSLContext,
        guard: AnonymousGuard,
        factory: ProtocolFactory,
        *,
        handshake_timeout: float,
        shutdown_timeout: float,
        backlog: int = 4096,
        connecting: ConnectSlots | None = None,
    ) -> None:
        """``connecting``: the slots TLS links wait for (by default CONNECTING_LINKS of
        them, and a link that waited ``handshake_timeout`` is closed unserved)."""
        self._host = host
        self._port = port
        self._ssl = ssl_context
        self._guard = guard
        self._factory = factory
        self._handshake_timeout = handshake_timeout
        self._shutdown_timeout = shutdown_timeout
        self._backlog = backlog
        self.connecting = connecting or ConnectSlots(
            max_wait=handshake_timeout, per_source=guard.limits.per_source
        )
        self.sockets: list[socket.socket] = []
        self._tasks: set[asyncio.Task[None]] = set()
        #: Knocks answered, by answer: what tests and benchmarks read.
        self.knocks_admitted = 0
        self.knocks_refused = 0

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        infos = await loop.getaddrinfo(
            self._host or None,
            self._port,
            type=socket.SOCK_STREAM,
            flags=socket.AI_PASSIVE,
        )
        try:
            for family, kind, proto, _, address in dict.fromkeys(
                (i[0], i[1], i[2], i[3], i[4]) for i in infos
            ):
                sock = socket.socket(family, kind, proto)
                self.sockets.append(sock)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                if family == socket.AF_INET6:
                    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                sock.bind(address)
                sock.listen(self._backlog)
                sock.setblocking(False)
        except OSError:
            self._close_sockets()
            raise
        for sock in self.sockets:
            loop.add_reader(sock.fileno(), self._accept_all, sock)

    def _spawn(self, coro: Coroutine[object, object, None]) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        self._close_sockets()
        self.connecting.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def _close_sockets(self) -> None:
        loop = asyncio.get_running_loop()
        for sock in self.sockets:
            if sock.fileno() >= 0:
                loop.remove_reader(sock.fileno())
            sock.close()

    def _accept_all(self, listener: socket.socket) -> None:
        """Take every connection waiting (as asyncio's own servers do): one accept per loop
        turn would let a reconnect storm of thousands queue in the backlog past the
        agents' connect timeout while the loop is busy with handshakes."""
        for _ in range(self._backlog):
            try:
                conn, address = listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except (ConnectionAbortedError, ConnectionResetError):
                continue  # the peer gave up while it waited in the backlog
            except OSError as exc:
                # Out of descriptors or memory: the socket stays readable, so retrying at the
                # next readiness would spin. Pause accepting for a second, as asyncio's own
                # servers do, while established links finish and free some.
                log.warning("agent port: accept failed (%s); pausing accepts for 1 s", exc)
                loop = asyncio.get_running_loop()
                loop.remove_reader(listener.fileno())
                loop.call_later(ACCEPT_RETRY_DELAY, self._resume, listener)
                return
            conn.setblocking(False)
            self._spawn(self._admit(conn, str(address[0])))

    def _resume(self, listener: socket.socket) -> None:
        if listener.fileno() >= 0:  # not closed meanwhile
            asyncio.get_running_loop().add_reader(listener.fileno(), self._accept_all, listener)

    async def _admit(self, conn: socket.socket, source: str) -> None:
        reserved = False
        slot: Slot | None = None
        try:
            async with asyncio.timeout(self._handshake_timeout):
                head = await _peek_knock(conn)
            if head == KNOCK:
                conn.recv(len(KNOCK))  # peeked: all there
                refusal = self._guard.admit(source)
                if refusal is not None:
                    self.knocks_refused += 1
                    # A fresh socket's send buffer takes the short line whole.
                    conn.send(busy_line(refusal))
                    conn.close()
                    return
                reserved = True
                self.knocks_admitted += 1
                conn.send(GO)
            else:
                # An enrolled device (or an agent that does not knock): its TLS handshake
                # waits for a connecting slot; None means its peer gave up meanwhile.
                slot = await self.connecting.acquire(
                    source_key(source), lambda: peer_still_there(conn)
                )
                if slot is None:
                    conn.close()
                    return
            loop = asyncio.get_running_loop()
            await loop.connect_accepted_socket(
                lambda: self._factory(reserved, slot),
                sock=conn,
                ssl=self._ssl,
                ssl_handshake_timeout=self._handshake_timeout,
                ssl_shutdown_timeout=self._shutdown_timeout,
            )
            reserved = False  # the link owns the slot now (LinkPacing gives it back)
            slot = None  # and its connecting slot (released once it identifies or ends)
        except (OSError, TimeoutError, ssl.SSLError) as exc:
            log.debug("agent port: connection from %s ended before TLS: %s", source, exc)
            conn.close()
        finally:
            if slot is not None:
                slot.release()
            if reserved:
                self._guard.release(source)
                self._guard.ended()


async def _peek_knock(conn: socket.socket) -> bytes:
    """The connection's first bytes, once they show whether it knocked (not consumed)."""
    loop = asyncio.get_running_loop()
    with contextlib.suppress(BlockingIOError, InterruptedError):
        # Usually the ClientHello (or the knock) is there by the time we accept.
        head = conn.recv(len(KNOCK), socket.MSG_PEEK)
        if head and (len(head) >= len(KNOCK) or not KNOCK.startswith(head)):
            return head
    while True:
        readable = loop.create_future()
        fd = conn.fileno()
        loop.add_reader(fd, _wake, readable)
        try:
            await readable
        finally:
            loop.remove_reader(fd)
        head = conn.recv(len(KNOCK), socket.MSG_PEEK)
        if not head:
            raise ConnectionResetError("closed before sending anything")
        # A TLS record (or anything else that is not the knock) is told apart by its first
        # bytes; a knock split across segments is waited for until whole.
        if len(head) >= len(KNOCK) or not KNOCK.startswith(head):
            return head
        await asyncio.sleep(0.01)  # the rest of a split knock is on its way (bounded by the caller)


def _wake(future: asyncio.Future[None]) -> None:
    if not future.done():  # the reader fires each loop turn until it is removed
        future.set_result(None)
