"""Enrollment under a storm: requests are queued, decided in batches, and told when to come back.

A factory rack powering on sends hundreds of ``enroll`` requests at once.
Deciding each in its own transaction costs a dozen database round trips per
device and serialises them all behind the key lock; requests then wait past
the agents' timeout and are sent again, multiplying the work (issue 18). So:

* one worker drains the queue: every request waiting when it looks is decided
  in one transaction (:meth:`EnrollmentService.enroll_many`), the CSRs parsed
  and checked off the event loop first;
* the queue is bounded by how long it would take to drain: a request that
  would wait more than :data:`MAX_WAIT` seconds is answered at once with
  ``busy`` and a ``retry after N s`` the agent honours with jitter, instead of
  timing out (:func:`busy_message`, :func:`retry_after`).

Idempotency comes from the rules themselves: a retry with the same key finds
its accepted row and gets the same certificate; no second row is written.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import re
import time
from typing import TYPE_CHECKING

from hwfleet.protocol.errors import ErrorCode, MethodError

if TYPE_CHECKING:
    from hwfleet.trust.enrollment import EnrollmentService
    from hwfleet.trust.messages import EnrollParams, EnrollReply

log = logging.getLogger(__name__)

#: Seconds a queued request may expect to wait before it is told to come back instead
#: (agents wait 15 s for the reply).
MAX_WAIT = 6.0
#: Batches smaller than this say little about the cost per request (a transaction's fixed
#: cost dominates), so they do not move the estimate.
MIN_SAMPLE = 16
#: Requests decided in one transaction at most.
BATCH = 256
_RETRY = re.compile(r"retry after (\d+(?:\.\d+)?) s")


def busy_message(seconds: float) -> str:
    """The ``busy`` refusal agents recognise (:func:`retry_after`)."""
    return f"busy: the controller is enrolling many devices; retry after {math.ceil(seconds)} s"


def retry_after(message: str) -> float | None:
    """Seconds the controller asked to wait in ``message``, if it asked."""
    match = _RETRY.search(message)
    return float(match.group(1)) if match else None


_Item = tuple["EnrollParams", str, "asyncio.Future[EnrollReply]"]


class EnrollQueue:
    """Front of :class:`EnrollmentService` for the agent port: batched, bounded."""

    def __init__(self, service: EnrollmentService, *, max_wait: float = MAX_WAIT) -> None:
        self.service = service
        self.max_wait = max_wait
        self._queue: list[_Item] = []
        self._wake = asyncio.Event()
        self._worker: asyncio.Task[None] | None = None
        #: Seconds per request of the last batches (a moving average), to bound the queue.
        self.cost = 0.005

    async def enroll(self, params: EnrollParams, *, source_ip: str) -> EnrollReply:
        wait = (len(self._queue) + 1) * self.cost
        if wait > self.max_wait:
            # Come back about when the queue will have room again, never much later.
            raise MethodError(busy_message(min(10.0, wait - self.max_wait / 2)), ErrorCode.BUSY)
        future: asyncio.Future[EnrollReply] = asyncio.get_running_loop().create_future()
        self._queue.append((params, source_ip, future))
        self._wake.set()
        if self._worker is None or self._worker.done():
            self._worker = asyncio.create_task(self._run(), name="enroll-queue")
        return await future

    async def close(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
        for _, _, future in self._queue:
            if not future.done():
                future.set_exception(MethodError(busy_message(5), ErrorCode.BUSY))
        self._queue.clear()

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._queue:
                batch, self._queue = self._queue[:BATCH], self._queue[BATCH:]
                live = [item for item in batch if not item[2].done()]
                if live:
                    await self._decide(live)

    async def _decide(self, batch: list[_Item]) -> None:
        start = time.monotonic()
        try:
            results = await self.service.enroll_many([(p, ip) for p, ip, _ in batch])
        except Exception as exc:  # the store failed: every request in the batch hears it
            log.exception("deciding %d enrollments failed", len(batch))
            results = [
                MethodError(f"enrollment failed on the controller: {exc}", ErrorCode.FAILED)
            ] * len(batch)
        for (_, _, future), result in zip(batch, results, strict=True):
            if future.done():
                continue
            if isinstance(result, BaseException):
                future.set_exception(result)
            else:
                future.set_result(result)
        if len(batch) >= MIN_SAMPLE:
            per_request = (time.monotonic() - start) / len(batch)
            self.cost = 0.7 * self.cost + 0.3 * per_request
