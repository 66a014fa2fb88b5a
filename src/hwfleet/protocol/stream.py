"""Run a :class:`~hwfleet.protocol.session.Session` over an asyncio stream pair."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any, Protocol

from hwfleet.protocol.errors import SessionClosedError
from hwfleet.protocol.framing import MAX_LINE, LineTooLongError, read_line
from hwfleet.protocol.session import Session


class StreamChannel:
    """Sends frames as lines on a writer; one line is written atomically."""

    def __init__(self, writer: asyncio.StreamWriter) -> None:
        self._writer = writer

    async def send(self, frame: bytes) -> None:
        if self._writer.is_closing():
            raise ConnectionResetError("stream is closed")
        self._writer.write(frame)
        await self._writer.drain()

    def send_now(self, frame: bytes) -> None:
        """Write without waiting for the buffer to drain (one small frame per device in a
        fleet-wide call; a link too slow to take it is dropped by the heartbeat rule).

        Refused while the transport already holds more than its high-water mark: a device
        that stops reading must not make repeated fleet-wide calls grow its buffer without
        bound (``send`` waits for the drain instead).
        """
        if self._writer.is_closing():
            raise ConnectionResetError("stream is closed")
        transport = self._writer.transport
        waiting = transport.get_write_buffer_size()
        if waiting > transport.get_write_buffer_limits()[1]:
            raise ConnectionError(f"the link is not taking data ({waiting} bytes waiting)")
        self._writer.write(frame)

    def peername(self) -> str:
        peer = self._writer.get_extra_info("peername")
        if isinstance(peer, tuple):
            return f"{peer[0]}:{peer[1]}"
        return str(peer)

    async def close(self) -> None:
        self._writer.close()
        with contextlib.suppress(ConnectionError, OSError, asyncio.CancelledError):
            await self._writer.wait_closed()


class Pacing(Protocol):
    """What a server asks of each line a link sends (limits for unidentified peers)."""

    def line_limit(self) -> int:
        """The longest next line (the reader's own limit must match); asked before each read."""
        ...

    async def before_line(self) -> None:
        """Called for every line, blank ones too, before it is handled; may wait."""
        ...


async def pump(
    reader: asyncio.StreamReader, session: Session[Any], *, pacing: Pacing | None = None
) -> None:
    """Feed every line from ``reader`` to ``session`` until EOF, a fatal error or close.

    After each line the loop yields: a peer with thousands of lines buffered
    (blank lines, pipelined requests) gets one line per event-loop turn, like
    everyone else, instead of holding the loop until its buffer is empty.
    """
    try:
        while not session.closed:
            limit = MAX_LINE if pacing is None else pacing.line_limit()
            try:
                line = await read_line(reader, limit, keep_blank=True)
            except LineTooLongError as exc:
                await session.fatal(str(exc))
                return
            if line is None:
                return
            if pacing is not None:
                await pacing.before_line()
            if line and not await session.handle(line):
                return
            await asyncio.sleep(0)
    except (ConnectionError, OSError) as exc:
        session.close(SessionClosedError(str(exc)))
    finally:
        session.close()
