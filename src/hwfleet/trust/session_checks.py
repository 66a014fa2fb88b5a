"""Is this certificate's key accepted? Answered in batches, and remembered for a while.

Every mTLS connect asks it before the handshake is accepted. One read transaction per
connect was a third of the connect path's database work in a storm (a controller
restart brings every device back within seconds), so the questions asked while one
lookup runs are answered together by the next (one ``IN`` query), and an accepted key
is remembered for ``ttl`` seconds so a flapping device costs no query at all.

Only "accepted" is remembered, and :meth:`SessionChecks.forget` (called by every
reject/delete of a key, which is every revocation) removes it at once; a lookup that
was running while a key was forgotten answers its callers but remembers nothing. The
``ttl`` bounds how long a revocation made by *another* controller replica is unseen
here (it cannot call ``forget`` in this process).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from hwfleet.store import Store

log = logging.getLogger(__name__)

#: At most this many fingerprints in one query (SQLite's bound-parameter limit is far above).
BATCH = 500


class SessionChecks:
    """Batched, cached ``fingerprint -> owner uuid`` for accepted keys."""

    def __init__(
        self,
        store: Store,
        *,
        ttl: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self._ttl = ttl
        self._clock = clock
        #: fingerprint -> (owner uuid, remembered until)
        self._accepted: dict[str, tuple[str, float]] = {}
        #: Questions waiting for the next lookup: fingerprint -> its answer (owner or None).
        self._waiting: dict[str, asyncio.Future[str | None]] = {}
        self._worker: asyncio.Task[None] | None = None
        #: Bumped by forget(): a lookup that started before it must not remember its answers.
        self._generation = 0

    async def accepted(self, fingerprint: str, device_uuid: str) -> bool:
        """True only while the newest key with this fingerprint is accepted for this uuid."""
        hit = self._accepted.get(fingerprint)
        if hit is not None:
            if hit[1] > self._clock():
                return hit[0] == device_uuid
            del self._accepted[fingerprint]
        future = self._waiting.get(fingerprint)
        if future is None:
            future = asyncio.get_running_loop().create_future()
            self._waiting[fingerprint] = future
            if self._worker is None or self._worker.done():
                self._worker = asyncio.create_task(self._drain(), name="session-checks")
        # shield: one caller's cancellation must not cancel the others' shared answer.
        return await asyncio.shield(future) == device_uuid

    def forget(self, fingerprint: str) -> None:
        """The key stopped being accepted (or may have): ask the store next time."""
        self._accepted.pop(fingerprint, None)
        self._generation += 1

    async def close(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
            await asyncio.gather(self._worker, return_exceptions=True)
        for future in self._waiting.values():
            future.cancel()
        self._waiting.clear()

    async def _drain(self) -> None:
        # Bounded: each round takes at least one waiting question off the queue, and new
        # questions only arrive from new connections.
        while self._waiting:
            batch = dict(list(self._waiting.items())[:BATCH])
            for fingerprint in batch:
                del self._waiting[fingerprint]
            generation = self._generation
            try:
                async with self._store.tx(readonly=True) as tx:
                    owners = await tx.keys.owners_if_accepted(list(batch))
            except Exception as exc:
                log.exception("key check of %d connecting devices failed", len(batch))
                for future in batch.values():
                    if not future.done():
                        future.set_exception(exc)
                continue
            until = self._clock() + self._ttl
            for fingerprint, future in batch.items():
                owner = owners.get(fingerprint)
                if owner is not None and generation == self._generation:
                    self._accepted[fingerprint] = (owner, until)
                if not future.done():
                    future.set_result(owner)
