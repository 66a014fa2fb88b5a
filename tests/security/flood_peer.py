"""A flooding attacker on the agent port, standard library only, in a process of its own.

    python flood_peer.py MODE HOST:PORT --sources 127.80.0.1,127.80.0.2 --links 16

MODE:

* ``blank``: every link writes blank lines as fast as the server takes them;
* ``pipeline``: every link pipelines ``enroll.hello`` requests (and reads the
  replies, so the server's writes never block);
* ``bigline``: every link sends 1,000,000 bytes without a newline (just under
  the protocol's 1 MiB line), then holds the link until the server closes it.

It prints ``{"ready": <links open>}`` once every link is connected (or refused;
in ``bigline`` mode: once every line is sent and answered, or after 30 s),
keeps attacking until its standard input closes, then prints a report: how
many links it opened, how many were refused, what the server said, and how
many bytes it sent. Own process, so that its work never counts against the
latencies the test measures.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import ssl
import sys
from collections import Counter
from typing import Any

HELLO = b'{"version": "1", "id": "h", "method": "enroll.hello", "params": {}}\n'
BIG = 1_000_000


class Report:
    def __init__(self) -> None:
        self.opened = 0
        self.failed: Counter[str] = Counter()
        self.fatal: Counter[str] = Counter()
        self.sent = 0
        self.replies = 0


def context() -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


async def read_all(reader: asyncio.StreamReader, report: Report) -> None:
    """Count replies and note fatal errors (their text, digits dropped) until EOF."""
    with contextlib.suppress(ConnectionError, ssl.SSLError, ValueError):
        while line := await reader.readline():
            report.replies += 1
            if b"fatal_error" in line:
                text = json.loads(line)["fatal_error"]
                report.fatal["".join(c for c in text if not c.isdigit())] += 1


async def one_link(
    mode: str, host: str, port: int, source: str, report: Report, connected: asyncio.Event
) -> None:
    try:
        reader, writer = await asyncio.open_connection(
            host, port, ssl=context(), local_addr=(source, 0), limit=4 << 20
        )
    except (OSError, ssl.SSLError) as exc:
        report.failed[type(exc).__name__] += 1
        connected.set()
        return
    report.opened += 1
    reading = asyncio.create_task(read_all(reader, report))
    try:
        if mode == "bigline":
            try:
                writer.write(b"a" * BIG)  # no newline, and just under the protocol's 1 MiB
                await writer.drain()
                report.sent += BIG
            except (ConnectionError, ssl.SSLError, OSError):
                pass  # the server answered and closed before taking it all
            # "ready" once the server has answered and closed this link (it closes every
            # one: the line is too long, or the link one too many), at most 30 s: the send
            # can end before the answer is read, and a test that stops the flood at "ready"
            # would miss it (CI saw 392 of 400).
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(reading), 30)
            connected.set()
            await reading
            return
        connected.set()
        chunk = b"\n" * 65536 if mode == "blank" else HELLO * 256
        while not reading.done():
            writer.write(chunk)
            await writer.drain()
            report.sent += len(chunk)
    except (ConnectionError, ssl.SSLError, OSError):
        pass
    finally:
        reading.cancel()
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["blank", "pipeline", "bigline"])
    parser.add_argument("address")
    parser.add_argument("--sources", required=True)
    parser.add_argument("--links", type=int, default=16, help="links per source")
    args = parser.parse_args()
    host, _, port = args.address.rpartition(":")
    report = Report()
    events: list[asyncio.Event] = []
    tasks: list[asyncio.Task[Any]] = []
    for source in args.sources.split(","):
        for _ in range(args.links):
            connected = asyncio.Event()
            events.append(connected)
            tasks.append(
                asyncio.create_task(one_link(args.mode, host, int(port), source, report, connected))
            )
    async with asyncio.timeout(60):
        for event in events:
            await event.wait()
    print(json.dumps({"ready": report.opened}), flush=True)
    # Attack until the test closes our standard input.
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    print(
        json.dumps(
            {
                "opened": report.opened,
                "failed": dict(report.failed),
                "fatal": dict(report.fatal),
                "sent": report.sent,
                "replies": report.replies,
            }
        ),
        flush=True,
    )


if __name__ == "__main__":
    asyncio.run(main())
