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

import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from hwfleet.store.coalesce import Coalescer

if TYPE_CHECKING:
    from hwfleet.store import Store

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
        self._lookups = Coalescer(self._lookup, batch=BATCH, name="session-checks")
        #: Bumped by forget(): a lookup that started before it must not remember its answers.
        self._generation = 0

    async def accepted(self, fingerprint: str, device_uuid: str) -> bool:
        """True only while the newest key with this fingerprint is accepted for this uuid."""
        hit = self._accepted.get(fingerprint)
        if hit is not None:
            if hit[1] > self._clock():
                return hit[0] == device_uuid
            del self._accepted[fingerprint]
        return await self._lookups.ask(fingerprint) == device_uuid

    def forget(self, fingerprint: str) -> None:
        """The key stopped being accepted (or may have): ask the store next time."""
        self._accepted.pop(fingerprint, None)
        self._generation += 1

    async def close(self) -> None:
        await self._lookups.close()

    async def _lookup(self, fingerprints: list[str]) -> dict[str, str]:
        generation = self._generation
        async with self._store.tx(readonly=True) as tx:
            owners = await tx.keys.owners_if_accepted(fingerprints)
        if generation == self._generation:  # nothing was forgotten while it ran
            until = self._clock() + self._ttl
            for fingerprint, owner in owners.items():
                self._accepted[fingerprint] = (owner, until)
        return owners
