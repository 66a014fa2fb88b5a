"""Run a :class:`~hwfleet.protocol.session.Session` over an asyncio stream pair."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from hwfleet.protocol.errors import SessionClosed
from hwfleet.protocol.framing import LineTooLong, read_line
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

    def peername(self) -> str:
        peer = self._writer.get_extra_info("peername")
        if isinstance(peer, tuple):
            return f"{peer[0]}:{peer[1]}"
        return str(peer)

    async def close(self) -> None:
        self._writer.close()
        with contextlib.suppress(ConnectionError, OSError, asyncio.CancelledError):
            await self._writer.wait_closed()


async def pump(reader: asyncio.StreamReader, session: Session[Any]) -> None:
    """Feed every line from ``reader`` to ``session`` until EOF, a fatal error or close."""
    try:
        while not session.closed:
            try:
                line = await read_line(reader)
            except LineTooLong as exc:
                await session.fatal(str(exc))
                return
            if line is None:
                return
            if not await session.handle(line):
                return
    except (ConnectionError, OSError) as exc:
        session.close(SessionClosed(str(exc)))
    finally:
        session.close()
