"""Line framing over asyncio streams, with the 1 MiB line limit of DESIGN §3."""

from __future__ import annotations

import asyncio

from hwfleet.protocol.errors import FatalProtocolError

#: Longest line accepted, newline excluded.
MAX_LINE = 1 << 20
#: StreamReader buffer limit to pass to ``open_connection`` / ``start_server``.
STREAM_LIMIT = MAX_LINE + 1


class LineTooLongError(FatalProtocolError):
    """The peer sent more than :data:`MAX_LINE` bytes without a newline."""


async def read_line(
    reader: asyncio.StreamReader, limit: int = MAX_LINE, *, keep_blank: bool = False
) -> bytes | None:
    """Read one line without its newline; ``None`` at end of stream.

    A peer that disconnects mid-line also gives ``None``: the partial line is
    dropped, since nothing can be answered on a closed connection. Blank lines
    are skipped (keep-alive tolerance), or returned as ``b""`` with
    ``keep_blank`` so that the caller can pace them like any other line.
    """
    while True:
        try:
            line = await reader.readuntil(b"\n")
        except asyncio.IncompleteReadError:
            return None
        except asyncio.LimitOverrunError:
            raise LineTooLongError(f"line longer than {limit} bytes") from None
        except ValueError:  # readuntil's other way of saying the limit was overrun
            raise LineTooLongError(f"line longer than {limit} bytes") from None
        if len(line) - 1 > limit:
            raise LineTooLongError(f"line of {len(line) - 1} bytes exceeds {limit}")
        body = line.rstrip(b"\r\n")
        if body or keep_blank:
            return body
