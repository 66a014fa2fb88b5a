"""Full garbage collections in a controller holding thousands of links (issue 18).

A controller with 10,000 stream links has about a million objects that Python's
cyclic garbage collector tracks (about a hundred per link: transport, TLS
object, session, reader, …). CPython runs an automatic full (generation-2)
collection whenever a quarter as many objects again as the oldest generation
holds have survived into it, and each one scanned all of them: 0.6 to 0.7 s on the
2-core bench machine, during which no link is served. A ping-all of 10,000
devices (a future, a callback and a result per device, alive until the last
answer) is that much, so most ping-alls ran one or two. ``bench/storm.py
--devices 10000``, 15 ping-alls in two runs: 0.84 to 2.27 s (median 1.6 s, two
over issue 18's 2 s), the controller's CPU per ping-all 0.72 to 2.12 s while the
simulators' stayed at 0.5 to 1.5 s. Tenured as below, 20 in three runs: 0.92 to
1.32 s (median 1.1 s), the controller's CPU 0.79 to 1.18 s.

So, in ``hwfleet server``, whatever survives a full collection is *tenured*
(:func:`gc.freeze`): later automatic collections skip it and scan only what has
been allocated since. A tenured object is still freed by reference counting as
before; only one caught in a reference cycle — a closed link's objects are —
waits for :func:`collect_all`, which reconsiders everything and which the
controller runs a few seconds after links close
(:class:`~hwfleet.controller.links.guard.HeapTrimmer`).
"""

from __future__ import annotations

import asyncio
import gc
from typing import Any

#: Seconds between full collections of everything while tenuring. A tenured object that
#: becomes garbage inside a reference cycle waits for :func:`collect_all`; links closing
#: run it, and this bounds the wait when none closes for a long time (one 0.6-0.7 s
#: collection every ten minutes with 10,000 links).
FULL_COLLECTION_INTERVAL = 600.0


def _tenure(phase: str, info: dict[str, Any]) -> None:
    # "stop" of a full collection: every unreachable cycle was just freed, so what is
    # tracked now is alive. (gc.freeze only moves the generations' lists: safe here.)
    if phase == "stop" and info["generation"] == 2:
        gc.freeze()


def start_tenuring() -> None:
    """From the next full collection on, tenure its survivors (the ``hwfleet server``
    process only: a process that is not a controller gains nothing from it)."""
    if not tenuring():
        gc.callbacks.append(_tenure)


def stop_tenuring() -> None:
    """Back to CPython's own collections, tenured objects included."""
    if tenuring():
        gc.callbacks.remove(_tenure)
        gc.unfreeze()


def tenuring() -> bool:
    """Whether this process tenures (the collector's callbacks are its only state)."""
    return _tenure in gc.callbacks


def collect_all() -> int:
    """A full collection of everything, tenured objects included (then tenured again);
    the number of objects found unreachable."""
    if tenuring():
        gc.unfreeze()
    return gc.collect()  # when tenuring, _tenure freezes the survivors


async def collect_periodically(interval: float = FULL_COLLECTION_INTERVAL) -> None:
    """:func:`collect_all` every ``interval`` seconds, until cancelled."""
    while True:
        await asyncio.sleep(interval)  # a periodic job, not synchronisation
        collect_all()
