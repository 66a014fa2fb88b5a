"""Helpers shared by the long-running commands: logging, the event loop, signals."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from typing import Any, TypeVar

T = TypeVar("T")


def setup_logging(level: str = "info") -> None:
    """Plain, greppable log lines on stderr (rich stays out of the agent's memory budget)."""
    from hwfleet.errors import CliError
    from hwfleet.settings import check_log_level

    try:
        check_log_level(level)
    except ValueError as exc:
        raise CliError(f"--log-level: {exc}") from None
    logging.basicConfig(
        level=level.upper(),
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    logging.getLogger("hwfleet").setLevel(level.upper())
    for noisy in ("aiormq", "aio_pika", "uvicorn.error", "httpx"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def with_source(message: str, setting: str | None, origins: Mapping[str, str]) -> str:
    """``message`` plus where the setting it is about came from (flag, variable, file)."""
    if setting is None:
        return message
    return f"{message} ({setting} from {origins.get(setting, 'the default')})"


def run(main: Coroutine[Any, Any, T], *, fast: bool = True) -> T:
    """Run a coroutine on uvloop when installed (the ``fast`` extra) and asked for, else asyncio.

    The agent passes ``fast=False``: one device's traffic does not need uvloop,
    and its memory budget (30 MB) does not have room for it.
    """
    if not fast:
        return asyncio.run(main)
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    result: T = uvloop.run(main)
    return result


#: Seconds ``work`` has to wind down after SIGINT/SIGTERM before it is cancelled.
STOP_GRACE = 5.0


async def until_signalled(
    work: Callable[[asyncio.Event], Awaitable[None]], *, grace: float = STOP_GRACE
) -> None:
    """Run ``work(stop)``; SIGINT/SIGTERM set ``stop`` so it can shut down cleanly.

    Work that does not finish within ``grace`` seconds of the signal — typically
    still waiting for a broker or database at start-up, where it never looks at
    ``stop`` — is cancelled, so a stop signal always stops the process. A second
    signal cancels at once.
    """
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    task = asyncio.ensure_future(work(stop))

    def on_signal() -> None:
        if stop.is_set():
            task.cancel()
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal)
    stopped = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({task, stopped}, return_when=asyncio.FIRST_COMPLETED)
        if not task.done():
            await asyncio.wait({task}, timeout=grace)
            if not task.done():
                logging.getLogger("hwfleet").warning(
                    "still busy %.0f s after the stop signal: cancelling", grace
                )
                task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    finally:
        stopped.cancel()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
