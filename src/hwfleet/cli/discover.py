"""``hwfleet discover``: find devices from this machine (no controller needed).

Without ``--interface`` or ``--probe`` it queries the multicast group on the loopback
interface only; ``--interface IF`` multicasts on that interface; ``--probe ADDR|CIDR``
(repeatable, at most a /16 each) sends paced unicast queries, e.g.
``--probe 127.1.0.0/24`` for simulated devices. ``--json`` prints one JSON list of
metadata objects (DESIGN §7 fields plus fingerprint, signed, spoofed, state).
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import typer

from hwfleet.cli.client import CliError
from hwfleet.cli.output import console, plain, print_json, styled, table
from hwfleet.cli.params import duration

_COLUMNS = ("uuid", "name", "serial", "model_id", "version", "ipaddr", "st_id", "state", "key")


def _row(doc: dict[str, Any]) -> list[Any]:
    from hwfleet.protocol.status import describe

    # Every other cell is what a device on the network said: printed as plain text.
    if doc["spoofed"]:
        key = styled("SPOOFED", "red")
    elif doc["trusted"]:
        key = styled("enrolled", "green")
    else:
        key = plain("signed") if doc["signed"] else styled("unsigned", "yellow")
    status = f"{doc['st_id']} {describe(doc['st_id'])}"
    if doc.get("st_prog") is not None:
        status += f" {doc['st_prog']:.0f}%"
    return [
        doc["uuid"],
        doc["name"],
        str(doc["serial"]),
        doc["model_id"],
        doc["version"],
        doc["ipaddr"],
        status,
        doc["state"],
        key,
    ]


def _table(docs: list[dict[str, Any]], title: str) -> Any:
    return table(title, _COLUMNS, [_row(doc) for doc in docs])


async def _discover(
    seconds: float, interface: str | None, probe: list[str], port: int, as_json: bool
) -> list[dict[str, Any]]:
    from hwfleet.discovery import DiscoveryBrowser

    try:
        browser = DiscoveryBrowser(
            interface=interface, probe=probe, port=port, max_age=max(seconds, 1.0)
        )
    except ValueError as exc:
        raise CliError(str(exc)) from None
    try:
        await browser.start()
    except OSError as exc:
        raise CliError(f"cannot open the discovery socket: {exc}") from None
    try:
        if as_json:
            found = await browser.scan(seconds)
        else:
            found = await _scan_live(browser, seconds)
    finally:
        await browser.close()
    return [d.to_json() for d in found]


async def _scan_live(browser: Any, seconds: float) -> list[Any]:
    from rich.live import Live

    seen: dict[str, dict[str, Any]] = {}
    title = "discovering…"
    with Live(_table([], title), console=console(), refresh_per_second=8) as live:

        async def follow() -> None:
            async for update in browser.updates():
                seen[update.metadata.uuid] = update.to_json()
                live.update(_table(sorted(seen.values(), key=lambda d: d["ipaddr"]), title))

        watcher = asyncio.get_running_loop().create_task(follow())
        try:
            found: list[Any] = await browser.scan(seconds)
        finally:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
        docs = [d.to_json() for d in found]
        live.update(_table(docs, f"{len(docs)} device(s) found"))
    return found


def register(app: typer.Typer) -> None:
    @app.command("discover")
    def discover(
        timeout: float = typer.Option(
            3.0,
            "--timeout",
            parser=duration(0.1, 300),
            metavar="DURATION",
            help="how long to listen",
        ),
        interface: str | None = typer.Option(
            None, "--interface", help="multicast on this interface (default: loopback only)"
        ),
        probe: list[str] = typer.Option(  # noqa: B008 - typer reads defaults at call time
            [], "--probe", help="unicast-probe ADDR or CIDR (at most /16; repeatable)"
        ),
        port: int = typer.Option(1901, "--port", min=1, max=65535, help="discovery UDP port"),
        as_json: bool = typer.Option(False, "--json", help="print one JSON document"),
    ) -> None:
        """Find devices on the network and show their status (signed, spoofed, state)."""
        docs = asyncio.run(_discover(timeout, interface, probe, port, as_json))
        if as_json:
            print_json(docs)
