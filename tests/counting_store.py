"""A real store that counts its transactions: how many queries batched work costs."""

from __future__ import annotations

from typing import Any

from hwfleet.store import Store


class CountingStore:
    """Passes ``tx`` and ``write`` to the real store, counting each."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self.reads = 0
        self.writes = 0

    def tx(self, **kw: Any) -> Any:
        self.reads += 1
        return self._store.tx(**kw)

    async def write(self, work: Any) -> Any:
        self.writes += 1
        return await self._store.write(work)
