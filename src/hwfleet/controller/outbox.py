"""The outbox delivery worker: every MES / webhook post leaves the database at least once.

Rows are written by whoever causes a post (the scan's finishing transaction)
and delivered here: claim due rows under a lease (replicas never claim the
same row; a crashed worker's lease runs out and another takes over), POST
each with its ``Idempotency-Key``, then record the outcome:

* 2xx — delivered.
* connection errors, timeouts, 408/425/429 and 5xx — retried forever by
  default with capped, jittered exponential backoff: a MES outage delays a
  post, it never loses one.
* any other 4xx — the MES refuses the body itself. Retried the same way with
  the refusal recorded in ``last_error`` (an operator can fix the MES), until
  ``max_attempts_refused`` attempts; then the row goes to ``dead`` so the
  refusal is visible in ``GET /api/v1/outbox`` instead of retrying for ever.

The state lives in the database, so a new worker on the same database picks
up exactly where a killed one stopped. A post whose delivery was cut short
after the MES received it may be sent again; the idempotency key lets the MES
recognise it (at-least-once delivery, exactly-once effect).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Protocol

from hwfleet.controller.events import utcnow
from hwfleet.integrations.mes import PostOutcome, jitter
from hwfleet.store.errors import describe_unavailable, is_unavailable
from hwfleet.types import JsonObject

if TYPE_CHECKING:
    from hwfleet.store import Store
    from hwfleet.store.records import OutboxRecord

log = logging.getLogger(__name__)


class Poster(Protocol):
    """What delivers one post (the MES client)."""

    async def deliver(self, url: str, body: JsonObject, *, idempotency_key: str) -> PostOutcome: ...


class OutboxWorker:
    """Claims due outbox rows and delivers them; :meth:`wake` after adding rows."""

    def __init__(
        self,
        store: Store,
        poster: Poster,
        *,
        worker_id: str | None = None,
        batch: int = 32,
        lease: float = 60.0,
        poll_interval: float = 1.0,
        backoff: float = 0.5,
        backoff_cap: float = 60.0,
        max_attempts_refused: int = 10,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._store = store
        self._poster = poster
        self.worker_id = worker_id or f"outbox-{uuid.uuid4().hex[:12]}"
        self.batch = batch
        self.lease = lease
        self.poll_interval = poll_interval
        self.backoff = backoff
        self.backoff_cap = backoff_cap
        self.max_attempts_refused = max_attempts_refused
        self._clock = clock
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._next_due: datetime | None = None
        self._store_down = False
        #: Completed passes over the due rows (tests wait on it; operators may graph it).
        self.passes = 0
        #: Called after a pass changed rows' delivery state (dashboards show it live).
        self.on_change: Callable[[], Awaitable[None]] | None = None

    def wake(self) -> None:
        """New rows were committed: look now instead of at the next poll."""
        self._wake.set()

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=f"outbox {self.worker_id}")

    async def close(self) -> None:
        """Stop; a delivery in flight is abandoned and its lease lets another worker redo it."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def retry_delay(self, attempts: int) -> float:
        """Seconds before the next try after ``attempts`` failed ones (capped, jittered)."""
        return jitter(min(self.backoff_cap, self.backoff * 2 ** min(attempts, 30)))

    async def _run(self) -> None:
        while True:
            try:
                handled = await self.run_once()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a database hiccup: keep the worker alive and try again
                handled = 0
                if not is_unavailable(exc):
                    log.exception("outbox worker %s: pass failed", self.worker_id)
                elif not self._store_down:  # once per outage, not once per poll
                    self._store_down = True
                    log.warning(
                        "outbox worker %s: the database is unavailable (%s); posts wait",
                        self.worker_id,
                        describe_unavailable(exc),
                    )
            else:
                if self._store_down:
                    self._store_down = False
                    log.warning("outbox worker %s: the database is back", self.worker_id)
            self.passes += 1
            if handled >= self.batch:
                continue  # there may be more due right now
            await self._idle()

    async def _idle(self) -> None:
        timeout = self.poll_interval
        if self._next_due is not None:
            until = (self._next_due - self._clock()).total_seconds()
            timeout = max(0.0, min(timeout, until))
            self._next_due = None
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self._wake.wait()
        self._wake.clear()

    async def run_once(self) -> int:
        """Claim and deliver one batch of due rows; returns how many were attempted."""
        async with self._store.tx() as tx:
            rows = await tx.outbox.claim(
                worker=self.worker_id, limit=self.batch, lease=self.lease, now=self._clock()
            )
        if not rows:
            return 0
        outcomes = await asyncio.gather(*(self._deliver(row) for row in rows))
        now = self._clock()
        async with self._store.tx() as tx:
            for row, outcome in zip(rows, outcomes, strict=True):
                if outcome.ok:
                    await tx.outbox.delivered(row.id, at=now)
                    continue
                error = outcome.error or "delivery failed"
                attempts = row.attempts  # the claim counted this attempt
                if not outcome.retryable and attempts >= self.max_attempts_refused:
                    log.error("outbox %s (%s) dead: %s", row.idempotency_key, row.kind, error)
                    await tx.outbox.dead(row.id, error=error, at=now)
                    continue
                due = now + timedelta(seconds=self.retry_delay(attempts - 1))
                if self._next_due is None or due < self._next_due:
                    self._next_due = due
                log.warning(
                    "outbox %s (%s) attempt %d failed, retrying: %s",
                    row.idempotency_key,
                    row.kind,
                    attempts,
                    error,
                )
                await tx.outbox.retry(row.id, error=error, next_attempt_at=due)
        if self.on_change is not None:
            await self.on_change()
        return len(rows)

    async def _deliver(self, row: OutboxRecord) -> PostOutcome:
        try:
            return await self._poster.deliver(
                row.url, row.body, idempotency_key=row.idempotency_key
            )
        except Exception as exc:  # a poster bug must cost a retry, not the worker
            log.exception("outbox %s: poster raised", row.idempotency_key)
            return PostOutcome(False, None, f"{type(exc).__name__}: {str(exc)[:200]}")
