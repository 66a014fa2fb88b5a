"""A MES lookup worker process: ``python -m hwfleet.integrations.mes_worker``.

Started by :class:`hwfleet.integrations.mes_lookup.MesLookupPool`, never by
hand. It reads newline-delimited JSON from stdin — first its configuration
(the MES URLs and client options; on stdin rather than the command line
because a URL may carry credentials that ``ps`` would show), then requests
``[id, sn]`` — and writes ``[id, 1, [registered, [[interface, mac], ...],
reason]]`` or ``[id, 0, reason]`` per request, in completion order, on
stdout. Each lookup is :meth:`MesClient.get_device`, with its retries and
error messages unchanged. It exits when stdin closes, which is also what
happens when the controller dies, however it dies.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from typing import Any

import msgspec

from hwfleet.controller.scan_compare import MacEntry, MesRecord
from hwfleet.integrations.mes import MesClient, MesError
from hwfleet.types import Serial

log = logging.getLogger("hwfleet.mes_worker")

#: What the pool sends first: the client's URLs and keyword options.
WorkerConfig = dict[str, Any]


def encode_record(record: MesRecord) -> list[Any]:
    return [record.registered, [[m.interface, m.macaddr] for m in record.macs], record.reason]


def decode_record(value: Any) -> MesRecord:
    registered, macs, reason = value
    return MesRecord(
        registered=bool(registered),
        macs=tuple(MacEntry(str(i), str(m)) for i, m in macs),
        reason=str(reason),
    )


async def _lookup(client: MesClient, request_id: int, sn: Serial) -> list[Any]:
    try:
        return [request_id, 1, encode_record(await client.get_device(sn))]
    except MesError as exc:
        return [request_id, 0, str(exc)]
    except Exception as exc:  # a bug here must cost one device a clear error, not the worker
        log.exception("MES lookup of %r failed unexpectedly", sn)
        return [request_id, 0, f"MES lookup failed: {type(exc).__name__}: {exc}"]


async def serve(reader: asyncio.StreamReader, write: Any) -> None:
    """Answer requests from ``reader`` until it ends; ``write(bytes)`` sends a reply line."""
    config: WorkerConfig = msgspec.json.decode(await reader.readline())
    tasks: set[asyncio.Task[None]] = set()
    async with MesClient(config["urls"], **config.get("options", {})) as client:

        async def answer(request_id: int, sn: Serial) -> None:
            write(msgspec.json.encode(await _lookup(client, request_id, sn)) + b"\n")

        while line := await reader.readline():
            try:
                request_id, sn = msgspec.json.decode(line)
            except (msgspec.DecodeError, TypeError, ValueError):
                log.error("mes worker: ignoring a malformed request line %r", line[:80])
                continue
            task = asyncio.create_task(answer(request_id, sn))
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
    logging.basicConfig(level=logging.WARNING, format="mes-worker %(levelname)s %(message)s")
    try:
        import uvloop
    except ImportError:
        asyncio.run(_main())
    else:
        uvloop.run(_main())


if __name__ == "__main__":
    main()
