"""Questions asked while one lookup runs, answered together by the next (one query).

A storm of arriving devices asks the store the same kind of question thousands of
times a second — is this key accepted, which tasks does this device have. One read
transaction each was most of the connect path's database work; instead every question
asked while a lookup runs waits for the next one, which answers them all with one
``IN`` query of up to ``batch`` keys. Used by :mod:`hwfleet.trust.session_checks` and
:mod:`hwfleet.controller.active_tasks`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Hashable, Mapping
from typing import Generic, TypeVar

log = logging.getLogger(__name__)

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class Coalescer(Generic[K, V]):
    """``await ask(key)``: ``lookup``'s answer for ``key`` (None when it gave none)."""

    def __init__(
        self,
        lookup: Callable[[list[K]], Awaitable[Mapping[K, V]]],
        *,
        batch: int,
        name: str,
    ) -> None:
        self._lookup = lookup
        self._batch = batch
        self._name = name  # in the worker task's name and the failure's log line
        self._waiting: dict[K, asyncio.Future[V | None]] = {}
        self._worker: asyncio.Task[None] | None = None
        #: Lookups run, for tests: fewer than the questions when they came together.
        self.lookups = 0

    async def ask(self, key: K) -> V | None:
        future = self._waiting.get(key)
        if future is None:
            future = asyncio.get_running_loop().create_future()
            self._waiting[key] = future
            if self._worker is None or self._worker.done():
                self._worker = asyncio.create_task(self._drain(), name=self._name)
        # shield: one caller's cancellation must not cancel the others' shared answer.
        return await asyncio.shield(future)

    async def close(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
            await asyncio.gather(self._worker, return_exceptions=True)
        for future in self._waiting.values():
            future.cancel()
        self._waiting.clear()

    async def _drain(self) -> None:
        # Bounded: each round takes at least one waiting question off the queue, and new
        # questions come only from new arrivals.
        while self._waiting:
            batch = dict(list(self._waiting.items())[: self._batch])
            for key in batch:
                del self._waiting[key]
            self.lookups += 1
            try:
                answers = await self._lookup(list(batch))
            except Exception as exc:
                log.exception("%s: a lookup of %d keys failed", self._name, len(batch))
                for future in batch.values():
                    if not future.done():
                        future.set_exception(exc)
                continue
            for key, future in batch.items():
                if not future.done():
                    future.set_result(answers.get(key))
