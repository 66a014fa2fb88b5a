"""MES lookups off the controller's event loop: a small pool of worker processes.

A burn-in scan does one MES lookup per device. httpx spends about a
millisecond of CPU on each, on the same event loop that consumes replies,
writes results and publishes events: on a 10,000-device rack the lookups
alone were a third of that loop's time. :class:`MesLookupPool` hands each
lookup to one of ``workers`` child processes (:mod:`.mes_worker`), each with
its own pooled :class:`~hwfleet.integrations.mes.MesClient`, so the lookups
run on another core and the loop only encodes one short line per device.

Behaviour is that of the in-process client: the same retries, the same
:class:`MesError` messages. A worker that dies is started again and its
unanswered lookups sent to it once more (a lookup is a GET: repeating it is
harmless); a worker that keeps dying fails its lookups with a clear error
instead of retrying forever. Workers start with the first lookup, so a
controller that never scans never forks.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import sys
import time
from collections.abc import Mapping
from typing import Protocol

import msgspec

from hwfleet.controller.scan_compare import MesRecord
from hwfleet.integrations.mes import MesError
from hwfleet.integrations.mes_worker import Answer, Request, WorkerConfig
from hwfleet.types import Serial

log = logging.getLogger(__name__)

#: A worker may die this many times within RESTART_WINDOW seconds before lookups fail.
MAX_RESTARTS = 3
RESTART_WINDOW = 60.0


class MesLookup(Protocol):
    """What a scan needs from the MES: one record per serial (in-process client or pool)."""

    async def get_device(self, sn: Serial) -> MesRecord: ...


class _Worker:
    """One child process, its unanswered requests, and the task reading its answers."""

    def __init__(self, pool: MesLookupPool, index: int) -> None:
        self.pool = pool
        self.index = index
        self.proc: asyncio.subprocess.Process | None = None
        self.pending: dict[int, tuple[Serial, asyncio.Future[MesRecord]]] = {}
        self.deaths: list[float] = []
        self._reader: asyncio.Task[None] | None = None

    async def spawn(self) -> None:
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "hwfleet.integrations.mes_worker",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        assert self.proc.stdin is not None
        self.proc.stdin.write(self.pool.config_line)
        for request_id, (sn, _) in self.pending.items():  # what the previous process left
            self._send(request_id, sn)
        self._reader = asyncio.create_task(self._read(self.proc), name=f"mes worker {self.index}")

    def submit(self, request_id: int, sn: Serial, future: asyncio.Future[MesRecord]) -> None:
        self.pending[request_id] = (sn, future)
        if self.proc is not None and self.proc.returncode is None:
            self._send(request_id, sn)

    def _send(self, request_id: int, sn: Serial) -> None:
        assert self.proc is not None and self.proc.stdin is not None
        self.proc.stdin.write(msgspec.json.encode(Request(request_id, sn)) + b"\n")

    async def _read(self, proc: asyncio.subprocess.Process) -> None:
        assert proc.stdout is not None
        buffer = b""
        while chunk := await proc.stdout.read(1 << 16):
            *lines, buffer = (buffer + chunk).split(b"\n")
            for line in lines:
                self._answer(line)
        await proc.wait()
        if not self.pool.closing:
            await self._died(proc.returncode)

    def _answer(self, line: bytes) -> None:
        try:
            answer = self.pool.answers.decode(line)
        except msgspec.DecodeError as exc:
            log.error("MES lookup worker %d sent an unreadable line %r: %s", self.index, line, exc)
            return
        item = self.pending.pop(answer.id, None)
        if item is None or item[1].done():
            return
        if answer.record is not None:
            item[1].set_result(answer.record)
        else:
            item[1].set_exception(MesError(answer.error or "the MES lookup worker gave no reason"))

    async def _died(self, code: int | None) -> None:
        now = time.monotonic()
        self.deaths = [t for t in self.deaths if now - t < RESTART_WINDOW] + [now]
        if len(self.deaths) > MAX_RESTARTS:
            log.error(
                "MES lookup worker %d exited (code %s) %d times in %.0f s: failing its %d "
                "lookups; the next lookup starts it again",
                self.index,
                code,
                len(self.deaths),
                RESTART_WINDOW,
                len(self.pending),
            )
            self.proc = None
            pending, self.pending = self.pending, {}
            for _, future in pending.values():
                if not future.done():
                    future.set_exception(
                        MesError(f"the MES lookup worker keeps exiting (last exit code {code})")
                    )
            return
        log.warning(
            "MES lookup worker %d exited (code %s): starting it again and resending %d lookups",
            self.index,
            code,
            len(self.pending),
        )
        await self.spawn()

    async def close(self, grace: float) -> None:
        proc, self.proc = self.proc, None
        if proc is not None and proc.returncode is None:
            assert proc.stdin is not None
            proc.stdin.close()  # the worker exits at end of input
            try:
                async with asyncio.timeout(grace):
                    await proc.wait()
            except TimeoutError:
                proc.kill()
                await proc.wait()
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
        for _, future in self.pending.values():
            if not future.done():
                future.set_exception(MesError("the MES lookup pool was closed"))
        self.pending.clear()


class MesLookupPool:
    """``get_device`` like :class:`MesClient`, answered by ``workers`` child processes."""

    def __init__(
        self, urls: Mapping[str, str], workers: int = 1, **client_options: float | int
    ) -> None:
        if workers < 1:
            raise ValueError("a MES lookup pool needs at least one worker")
        self.urls = dict(urls)
        self.config_line = msgspec.json.encode(WorkerConfig(self.urls, client_options)) + b"\n"
        self.answers = msgspec.json.Decoder(Answer)
        self.closing = False
        self._workers = [_Worker(self, i) for i in range(workers)]
        self._ids = itertools.count(1)
        self._started: asyncio.Task[None] | None = None

    async def _start(self) -> None:
        await asyncio.gather(*(w.spawn() for w in self._workers if w.proc is None))

    async def get_device(self, sn: Serial) -> MesRecord:
        """The MES record for ``sn``; raises :class:`MesError` with the reason."""
        if self.closing:
            raise MesError("the MES lookup pool is closed")
        if self._started is None or (self._started.done() and self._stopped_worker()):
            self._started = asyncio.ensure_future(self._start())
        await asyncio.shield(self._started)
        worker = min(self._workers, key=lambda w: len(w.pending))
        future: asyncio.Future[MesRecord] = asyncio.get_running_loop().create_future()
        request_id = next(self._ids)
        worker.submit(request_id, sn, future)
        try:
            return await future
        finally:
            worker.pending.pop(request_id, None)  # a cancelled caller leaves nothing behind

    def _stopped_worker(self) -> bool:
        return any(w.proc is None for w in self._workers)

    def pids(self) -> list[int]:
        """The running workers' process ids (for operators and tests)."""
        return [w.proc.pid for w in self._workers if w.proc is not None]

    async def aclose(self, grace: float = 5.0) -> None:
        self.closing = True
        if self._started is not None:
            with contextlib.suppress(Exception):
                await self._started
        await asyncio.gather(*(w.close(grace) for w in self._workers))

    async def __aenter__(self) -> MesLookupPool:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.aclose()
