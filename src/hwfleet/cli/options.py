"""Options every operator command shares (a module of its own: command modules import it
and each other without cycles)."""

from __future__ import annotations

from typing import Annotated

import typer

ApiOpt = Annotated[str | None, typer.Option("--api", help="controller API URL (HWFLEET_API)")]
DataOpt = Annotated[str | None, typer.Option("--data-dir", help="where operator.token lives")]
JsonOpt = Annotated[bool, typer.Option("--json", help="one JSON document on stdout")]
#: Rolling work over many devices (``run``, ``device maintenance``; cli/fanout.py).
BatchOpt = Annotated[
    str | None,
    typer.Option("--batch", help="N or N%: devices at a time; the next batch waits for this one"),
]
KeepGoingOpt = Annotated[
    bool, typer.Option("--continue-on-error", help="go on to the next batch after a failure")
]
