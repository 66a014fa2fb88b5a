"""Output for listings: a rich table on a terminal, one JSON document with ``--json``.

Text that devices, agents or the API supply (names, fingerprints, messages) is
printed as it is: never parsed as rich markup (``[bold]``) or emoji codes (a
fingerprint's ``:cd:`` is not 💿). Use :func:`plain` and :func:`styled` for it,
and :func:`line` to put it in a sentence; only this module's callers' own
literals carry styles.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # rich is imported on use: the agent process never needs it
    from rich.console import Console
    from rich.text import Text

Column = tuple[str, Callable[[dict[str, Any]], Any]]
#: A piece of a :func:`line`: plain text, or (text, rich style) such as ("accepted", "green").
Part = str | tuple[str, str]


def console() -> Console:
    from rich.console import Console

    return Console(stderr=False, emoji=False)


def err_console() -> Console:
    from rich.console import Console

    return Console(stderr=True, emoji=False)


def plain(value: object) -> Text:
    """``value`` as text, exactly: no markup, no emoji codes."""
    from rich.text import Text

    return Text("" if value is None else str(value))


def styled(value: object, style: str) -> Text:
    """``value`` as text in ``style``, with no markup or emoji codes read from it."""
    from rich.text import Text

    return Text("" if value is None else str(value), style=style)


def line(*parts: Part) -> Text:
    """One line from plain and styled pieces; nothing in them is read as markup."""
    from rich.text import Text

    return Text.assemble(*parts)


def print_json(document: Any) -> None:
    """Exactly one JSON document on stdout, nothing else."""
    import msgspec  # on use: a command's start (before its request) stays light

    sys.stdout.write(msgspec.json.encode(document).decode() + "\n")
    sys.stdout.flush()


def table(title: str, columns: Sequence[str], rows: Sequence[Sequence[object]]) -> Any:
    """A rich table whose cells (and title) are plain text unless given as :class:`Text`."""
    from rich.table import Table
    from rich.text import Text

    out = Table(title=plain(title), header_style="bold")
    for name in columns:
        out.add_column(name)
    for row in rows:
        out.add_row(*(cell if isinstance(cell, Text) else plain(cell) for cell in row))
    return out


def print_table(title: str, rows: Sequence[dict[str, Any]], columns: Sequence[Column]) -> None:
    cells = [[get(row) for _, get in columns] for row in rows]
    console().print(table(title, [name for name, _ in columns], cells))
