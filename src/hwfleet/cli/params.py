"""Option parsers shared by the commands: durations (``--ttl 1h``, ``--timeout 90s``).

Plain callables for typer's ``parser=``, not click parameter types: typer 0.28
vendors its own click, whose error classes a type built on ``click`` would miss
(``typer.BadParameter`` is the right one under every typer we support).
"""

from __future__ import annotations

from collections.abc import Callable

import typer

from hwfleet.durations import parse_duration


def duration(minimum: float = 0.0, maximum: float | None = None) -> Callable[[str], float]:
    """A parser for a duration option in seconds; the usage error says what is wrong."""

    def parse(value: str) -> float:
        try:
            seconds = parse_duration(value)
        except ValueError as exc:
            raise typer.BadParameter(str(exc)) from None
        if seconds < minimum:
            raise typer.BadParameter(f"{value!r} must be at least {minimum:g} s")
        if maximum is not None and seconds > maximum:
            raise typer.BadParameter(f"{value!r} must be at most {maximum:g} s")
        return seconds

    return parse


#: A duration that must be longer than nothing.
POSITIVE_DURATION = duration(minimum=0.001)
