"""A MES lookup worker process: ``python -m hwfleet.integrations.mes_worker``.

Started by :class:`hwfleet.integrations.mes_lookup.MesLookupPool`, never by
hand. It reads newline-delimited JSON from stdin — first its
:class:`WorkerConfig` (the MES URLs and client options; on stdin rather
than the command line because a URL may carry credentials that ``ps``
would show), then :class:`Request` lines ``[id, sn]`` — and writes one
:class:`Answer` ``[id, record, error]`` per request, in completion order,
on stdout. Each lookup is :meth:`MesClient.get_device`, with its retries and
error messages unchanged. It exits when stdin closes, which is also what
happens when the controller dies, however it dies.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from typing import Any

import msgspec

from hwfleet.controller.scan_compare import MesRecord
from hwfleet.integrations.mes import MesClient, MesError
from hwfleet.types import Serial

log = logging.getLogger("hwfleet.mes_worker")


class WorkerConfig(msgspec.Struct, frozen=True):
    """The first line the pool sends: the client's URLs and keyword options."""

    urls: dict[str, str]
    options: dict[str, Any] = {}


class Request(msgspec.Struct, array_like=True, frozen=True):
    id: int
    sn: Serial


class Answer(msgspec.Struct, array_like=True, frozen=True):
    """One lookup's outcome: the record, or the reason it failed."""

    id: int
    record: MesRecord | None = None
    error: str | None = None


async def _lookup(client: MesClient, request: Request) -> Answer:
    try:
        return Answer(request.id, record=await client.get_device(request.sn))
    except MesError as exc:
        return Answer(request.id, error=str(exc))
    except Exception as exc:  # a bug here must cost one device a clear error, not the worker
        log.exception("MES lookup of %r failed unexpectedly", request.sn)
        return Answer(request.id, error=f"MES lookup failed: {type(exc).__name__}: {exc}")


async def serve(reader: asyncio.StreamReader, write: Any) -> None:
    """Answer requests from ``reader`` until it ends; ``write(bytes)`` sends a reply line."""
    config = msgspec.json.decode(await reader.readline(), type=WorkerConfig)
    requests = msgspec.json.Decoder(Request)
    tasks: set[asyncio.Task[None]] = set()
    async with MesClient(config.urls, **config.options) as client:

        async def answer(request: Request) -> None:
            write(msgspec.json.encode(await _lookup(client, request)) + b"\n")

        while line := await reader.readline():
            try:
                request = requests.decode(line)
            except msgspec.DecodeError as exc:
                log.error("mes worker: ignoring a malformed request line %r: %s", line[:80], exc)
                continue
            task = asyncio.create_task(answer(request))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        for task in tasks:  # the pool is gone: nobody is waiting for these answers
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def _main() -> None:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=1 << 20)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    transport, _ = await loop.connect_write_pipe(asyncio.Protocol, sys.stdout)
    try:
        await serve(reader, transport.write)
    finally:
        transport.close()


def main() -> None:
    from hwfleet.cli.common import run  # stdlib only: the worker stays small

    logging.basicConfig(level=logging.WARNING, format="mes-worker %(levelname)s %(message)s")
    run(_main())


if __name__ == "__main__":
    main()
