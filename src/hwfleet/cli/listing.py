"""``hwfleet devices``: the fleet as a table that fits the terminal.

The uuid column shows each device's shortest unique prefix (at least 4 characters, like
git's abbreviated hashes): it works as a target anywhere (``hwfleet run a3f9 status``).
"last seen" is relative. Columns that do not fit the terminal are left out, least useful
first (never the uuid prefix or the name); ``--wide`` shows every column, ``--columns``
exactly the ones named (``sku``: the SKU the graph engine assigned). A target
(``hwfleet devices sku=gpu-node``) lists only the devices it selects. ``--json`` is
unchanged: DESIGN §8's list of device objects.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated, Any

import typer

from hwfleet.cli.client import ApiClient, CliError
from hwfleet.cli.fleet import DEVICE_KEYS
from hwfleet.cli.options import ApiOpt, DataOpt, JsonOpt
from hwfleet.cli.output import console, print_json, table
from hwfleet.cli.targets import TargetArgs

Cell = Callable[[dict[str, Any]], object]


def ago(text: str | None, now: datetime) -> str:
    """``2026-12-03T10:00:00+00:00`` as "3h ago" (or "just now")."""
    if not text:
        return ""
    try:
        then = datetime.fromisoformat(text)
    except ValueError:
        return text
    seconds = (now - then).total_seconds()
    if seconds < 5:
        return "just now"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{int(seconds // size)}{unit} ago"
    return f"{int(seconds)}s ago"


def columns(now: datetime) -> dict[str, Cell]:
    """Every column by name, in display order."""
    return {
        "uuid": lambda r: r["short"],
        "name": lambda r: r["name"],
        "serial": lambda r: r["serial"],
        "model": lambda r: r["model_id"],
        "ipaddr": lambda r: r["ipaddr"],
        "state": lambda r: r["state"],
        "st_id": lambda r: r["st_id"],
        "last seen": lambda r: ago(r.get("last_seen"), now),
        "kind": lambda r: r.get("kind", "agent"),
        "sku": lambda r: r.get("sku") or "",
        "version": lambda r: r["version"],
        "transport": lambda r: r.get("transport", ""),
        "full uuid": lambda r: r["uuid"],
        "first seen": lambda r: ago(r.get("first_seen"), now),
    }


DEFAULT: tuple[str, ...] = (
    "uuid",
    "name",
    "serial",
    "model",
    "ipaddr",
    "state",
    "st_id",
    "last seen",
    "kind",
)
#: Left out first when the terminal is too narrow.
DROP_ORDER: tuple[str, ...] = (
    *("sku", "kind", "version", "transport", "first seen", "full uuid", "model", "serial"),
    *("ipaddr", "st_id", "last seen", "state"),
)


def fit(chosen: list[str], cells: dict[str, list[str]], width: int) -> list[str]:
    """``chosen`` minus the least useful columns until the table fits ``width``."""
    shown = list(chosen)

    def needed() -> int:  # cell text plus rich's borders and padding (3 per column, 1 more)
        return 1 + sum(3 + max([len(c), *map(len, cells[c])]) for c in shown)

    for name in DROP_ORDER:
        if needed() <= width:
            break
        if name in shown and len(shown) > 2:
            shown.remove(name)
    return shown


def render(rows: list[dict[str, Any]], names: list[str], width: int | None, now: datetime) -> Any:
    from hwfleet.targeting import short_prefixes

    # A selection's rows come with prefixes unique over the whole fleet: keep those.
    prefixes = short_prefixes(r["uuid"] for r in rows)
    rows = [{"short": prefixes[r["uuid"]], **r} for r in rows]
    getters = columns(now)
    cells = {n: ["" if (v := getters[n](r)) is None else str(v) for r in rows] for n in names}
    shown = names if width is None else fit(names, cells, width)
    body = [[cells[n][i] for n in shown] for i in range(len(rows))]
    hidden = len(names) - len(shown)
    note = f" ({hidden} columns hidden: --wide)" if hidden else ""
    return table(f"{len(rows)} devices{note}", shown, body)


def register(app: typer.Typer) -> None:
    @app.command("devices")
    def devices(
        words: TargetArgs = None,
        wide: Annotated[bool, typer.Option("--wide", help="every column, however wide")] = False,
        cols: Annotated[
            str | None,
            typer.Option("--columns", help="these columns, comma-separated (see --wide)"),
        ] = None,
        api: ApiOpt = None,
        data_dir: DataOpt = None,
        as_json: JsonOpt = False,
    ) -> None:
        """List devices the controller knows (short uuid prefixes work as targets); with a
        TARGET, only the devices it selects."""
        with ApiClient(api, data_dir) as client:
            if words:
                from hwfleet.cli.targets import resolve, target_expr

                rows = resolve(client, target_expr(words))
            else:
                rows = client.get("/api/v1/devices")
        if as_json:
            print_json([{k: row.get(k) for k in DEVICE_KEYS} for row in rows])
            return
        now = datetime.now(UTC)
        known = list(columns(now))
        names = list(DEFAULT)
        if cols:
            names = [c.strip() for c in cols.split(",") if c.strip()]
            unknown = [c for c in names if c not in known]
            if unknown:
                raise CliError(
                    f"--columns: no column {', '.join(unknown)} (columns: {', '.join(known)})"
                )
        elif wide:
            names = known
        out = console()
        width = None if wide or cols else out.width
        if wide:
            out.width = max(out.width, 400)  # a wide table is not squeezed into the terminal
        out.print(render(rows, names, width, now))
