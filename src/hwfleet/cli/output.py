"""Output for listings: a rich table on a terminal, one JSON document with ``--json``."""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import msgspec

if TYPE_CHECKING:  # rich is imported on use: the agent process never needs it
    from rich.console import Console

Column = tuple[str, Callable[[dict[str, Any]], Any]]


def console() -> Console:
    from rich.console import Console

    return Console(stderr=False)


def err_console() -> Console:
    from rich.console import Console

    return Console(stderr=True)


def print_json(document: Any) -> None:
    """Exactly one JSON document on stdout, nothing else."""
    sys.stdout.write(msgspec.json.encode(document).decode() + "\n")
    sys.stdout.flush()


def print_table(title: str, rows: Sequence[dict[str, Any]], columns: Sequence[Column]) -> None:
    from rich.table import Table

    table = Table(title=title, header_style="bold")
    for name, _ in columns:
        table.add_column(name)
    for row in rows:
        table.add_row(*("" if (v := get(row)) is None else str(v) for _, get in columns))
    console().print(table)
