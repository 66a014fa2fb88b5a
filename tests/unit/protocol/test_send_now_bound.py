"""``send_now`` over a real socket whose peer stops reading: the buffer stays bounded."""

from __future__ import annotations

import asyncio
import socket

import pytest

from hwfleet.protocol.stream import StreamChannel


async def test_a_peer_that_stops_reading_gets_refused_not_an_unbounded_buffer() -> None:
    ours, theirs = socket.socketpair()
    theirs.setblocking(False)  # never read: a device that hung
    try:
        _, writer = await asyncio.open_connection(sock=ours)
        channel = StreamChannel(writer)
        high = writer.transport.get_write_buffer_limits()[1]
        frame = b"x" * 16 * 1024 + b"\n"
        with pytest.raises(ConnectionError, match="not taking data"):
            for _ in range(2_000):  # 32 MiB: far past the kernel's buffer and asyncio's
                channel.send_now(frame)
                await asyncio.sleep(0)  # let the transport hand what it can to the kernel
        assert writer.transport.get_write_buffer_size() <= high + len(frame)
        writer.close()
    finally:
        theirs.close()
