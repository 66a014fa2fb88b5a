"""The agent port's knock: an over-cap enrollment is refused before TLS, a knocked link keeps its
slot, and a plain TLS link is untouched (real sockets and TLS on 127.0.0.1)."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import socket
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from hwfleet.agent.links.enroll import _knock_then_tls
from hwfleet.controller.links import listener as listener_module
from hwfleet.controller.links.guard import AnonymousGuard, AnonymousLimits
from hwfleet.controller.links.listener import KnockListener
from hwfleet.trust import CertificateAuthority, first_contact_context, server_context
from hwfleet.trust.enroll_batch import retry_after
from hwfleet.trust.knock import BUSY, GO, KNOCK, KnockRefusedError


class Hello(asyncio.Protocol):
    """Says hello once the link (TLS done) is made; remembers whether a knock reserved it."""

    def __init__(self, made: list[bool], reserved: bool) -> None:
        self._made = made
        self._reserved = reserved

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._made.append(self._reserved)
        assert isinstance(transport, asyncio.Transport)
        transport.write(b"hello\n")


class Gate:
    def __init__(self, listener: KnockListener, guard: AnonymousGuard, made: list[bool]) -> None:
        self.listener = listener
        self.guard = guard
        self.made = made
        self.port = int(listener.sockets[0].getsockname()[1])
        self.released = asyncio.Event()
        release = guard.release

        def noted(source: str) -> None:
            release(source)
            self.released.set()

        guard.release = noted  # type: ignore[method-assign]


@pytest.fixture
def tls(tmp_path: Path) -> ssl.SSLContext:
    ca = CertificateAuthority.load_or_create(tmp_path / "ca")
    return server_context(ca, ca.issue_server_cert(["127.0.0.1"]))


@contextlib.asynccontextmanager
async def gate(context: ssl.SSLContext, slots: int) -> AsyncIterator[Gate]:
    guard = AnonymousGuard(AnonymousLimits(total=slots))
    made: list[bool] = []
    listener = KnockListener(
        "127.0.0.1",
        0,
        context,
        guard,
        lambda reserved, _slot: Hello(made, reserved),
        handshake_timeout=5.0,
        shutdown_timeout=1.0,
    )
    await listener.start()
    try:
        yield Gate(listener, guard, made)
    finally:
        await listener.close()
        guard.close()


async def test_a_knock_over_the_cap_is_refused_in_plain_text_without_tls(
    tls: ssl.SSLContext,
) -> None:
    async with gate(tls, slots=1) as g:
        assert g.guard.admit("10.9.9.9") is None  # the only slot is taken
        reader, writer = await asyncio.open_connection("127.0.0.1", g.port)
        writer.write(KNOCK)
        answer = await asyncio.wait_for(reader.readline(), 5)
        assert answer.startswith(BUSY)
        assert retry_after(answer.decode()) is not None
        assert "anonymous_links" in answer.decode()
        assert await asyncio.wait_for(reader.read(), 5) == b""  # closed, nothing more
        writer.close()
        # No TLS link was ever made, and the refusal took no slot.
        assert g.made == [] and g.listener.knocks_refused == 1 and g.guard.open_links == 1


async def test_the_agent_hears_the_refusal_with_when_to_come_back(tls: ssl.SSLContext) -> None:
    async with gate(tls, slots=1) as g:
        assert g.guard.admit("10.9.9.9") is None
        with pytest.raises(KnockRefusedError) as refused:
            await _knock_then_tls("127.0.0.1", g.port, first_contact_context(None), None)
        wait = retry_after(str(refused.value))
        assert wait is not None and wait >= 1
        assert g.made == []


async def test_a_knock_with_a_free_slot_reserves_it_then_tls_runs(tls: ssl.SSLContext) -> None:
    async with gate(tls, slots=1) as g:
        reader, writer = await _knock_then_tls(
            "127.0.0.1", g.port, first_contact_context(None), None
        )
        assert writer.get_extra_info("ssl_object") is not None
        assert await asyncio.wait_for(reader.readline(), 5) == b"hello\n"
        assert g.made == [True]  # the link knows its slot is taken already
        assert g.guard.open_links == 1 and g.listener.knocks_admitted == 1
        writer.close()


async def test_a_link_that_does_not_knock_gets_tls_as_before(tls: ssl.SSLContext) -> None:
    async with gate(tls, slots=1) as g:
        assert g.guard.admit("10.9.9.9") is None  # full: a TLS link is still taken to TLS
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", g.port, ssl=first_contact_context(None)
        )
        assert await asyncio.wait_for(reader.readline(), 5) == b"hello\n"
        assert g.made == [False] and g.guard.open_links == 1
        writer.close()


async def test_a_slot_reserved_by_a_knock_comes_back_when_tls_fails(
    tls: ssl.SSLContext,
) -> None:
    async with gate(tls, slots=1) as g:
        reader, writer = await asyncio.open_connection("127.0.0.1", g.port)
        writer.write(KNOCK)
        assert await asyncio.wait_for(reader.readline(), 5) == GO
        assert g.guard.open_links == 1
        writer.write(b"not a TLS ClientHello at all\r\n\r\n")
        await writer.drain()
        await asyncio.wait_for(g.released.wait(), 5)
        assert g.guard.open_links == 0 and g.made == []
        writer.close()


async def test_an_agent_falls_back_to_tls_when_the_controller_does_not_know_the_knock(
    tls: ssl.SSLContext,
) -> None:
    async def hello(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"hello\n")
        with contextlib.suppress(ConnectionError, ssl.SSLError):
            await writer.drain()

    # A controller from before the knock: TLS on every connection.
    server = await asyncio.start_server(hello, "127.0.0.1", 0, ssl=tls)
    try:
        port = server.sockets[0].getsockname()[1]
        reader, writer = await asyncio.wait_for(
            _knock_then_tls("127.0.0.1", port, first_contact_context(None), None), 10
        )
        assert await asyncio.wait_for(reader.readline(), 5) == b"hello\n"
        writer.close()
    finally:
        server.close()
        await server.wait_closed()


async def test_accepting_pauses_when_out_of_descriptors_then_resumes(
    tls: ssl.SSLContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    # accept() failing with EMFILE leaves the socket readable: retrying at every readiness
    # would spin the loop. The listener stops watching it, then watches it again.
    monkeypatch.setattr(listener_module, "ACCEPT_RETRY_DELAY", 0.05)
    loop = asyncio.get_running_loop()
    async with gate(tls, slots=1) as g:
        real = g.listener.sockets[0]

        class Exhausted:
            """The listening socket, out of descriptors for its first accept only."""

            failed = False

            def fileno(self) -> int:
                return real.fileno()

            def accept(self) -> tuple[socket.socket, object]:
                if not self.failed:
                    self.failed = True
                    raise OSError(errno.EMFILE, "Too many open files")
                return real.accept()

        g.listener._accept_all(Exhausted())  # type: ignore[arg-type]
        assert not loop.remove_reader(real.fileno()), "still watched: it would spin"
        # Once the pause is over, a knock is answered again.
        reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", g.port), 5)
        writer.write(KNOCK)
        assert await asyncio.wait_for(reader.readline(), 5) == GO
        writer.close()
