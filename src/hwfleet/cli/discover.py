"""``hwfleet discover``: find devices from this machine (no controller needed).

Without ``--interface`` or ``--probe`` it queries the multicast group on the loopback
interface only; ``--interface IF`` multicasts on that interface; ``--probe ADDR|CIDR``
(repeatable, at most a /16 each) sends paced unicast queries, e.g.
``--probe 127.1.0.0/24`` for simulated devices. ``--json`` prints one JSON list of
metadata objects (DESIGN §7 fields plus fingerprint, signed, spoofed, conflict, state).

Which key is genuine comes from the controller when it is reachable (its API with the
operator token: ``--api``/``HWFLEET_API``, ``HWFLEET_TOKEN`` or ``--data-dir``):
a packet for an enrolled uuid must be signed by the enrolled key, and anything else is
flagged as a spoof. Without a controller nothing says which key is genuine, so a uuid
announced with more than one key is shown as a conflict, listing every key and where
it came from, rather than trusting whichever packet arrived first.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import typer

from hwfleet.cli.client import ApiClient, CliError
from hwfleet.cli.fleet import ApiOpt, DataOpt
from hwfleet.cli.output import console, err_console, line, plain, print_json, styled, table
from hwfleet.cli.params import duration

#: Seconds to wait for the controller's key list before discovering without it.
KEYS_TIMEOUT = 3.0

_COLUMNS = ("uuid", "name", "serial", "model_id", "version", "ipaddr", "st_id", "state", "key")


def _row(doc: dict[str, Any]) -> list[Any]:
    from hwfleet.protocol.status import describe

    # Every other cell is what a device on the network said: printed as plain text.
    if doc.get("conflict"):
        claims = " | ".join(
            f"{_short(c['fingerprint'])} from {c['source']}" for c in doc.get("claims", [])
        )
        key = line(("CONFLICT", "red"), " " + claims)
    elif doc["spoofed"]:
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


def _short(fp: str | None) -> str:
    """A fingerprint's first eight bytes (enough to tell keys apart in a table)."""
    return "unsigned" if fp is None else fp[: len("SHA256:") + 8 * 3 - 1] + "…"


def enrolled_fingerprints(api: str | None, data_dir: str | None) -> tuple[dict[str, str], str]:
    """uuid → fingerprint of its accepted key, from the controller; and what to tell the
    operator. Empty, with the reason, when no controller is configured or reachable."""
    try:
        with ApiClient(api, data_dir, timeout=KEYS_TIMEOUT) as client:
            keys = client.get("/api/v1/keys")
            base = client.base
    except CliError as exc:
        return {}, (
            f"not checked against enrolled keys ({exc}); "
            "a device announced with more than one key is shown as a conflict"
        )
    known = {k["device_uuid"]: k["fingerprint"] for k in keys if k["state"] == "accepted"}
    return known, f"checked against the {len(known)} keys enrolled at {base}"


def _table(docs: list[dict[str, Any]], title: str) -> Any:
    return table(title, _COLUMNS, [_row(doc) for doc in docs])


async def _discover(
    seconds: float,
    interface: str | None,
    probe: list[str],
    port: int,
    as_json: bool,
    known: dict[str, str],
) -> list[dict[str, Any]]:
    from hwfleet.discovery import DiscoveryBrowser

    try:
        browser = DiscoveryBrowser(
            interface=interface,
            probe=probe,
            port=port,
            max_age=max(seconds, 1.0),
            known_keys=known.get,
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
        api: ApiOpt = None,
        data_dir: DataOpt = None,
        no_controller: bool = typer.Option(
            False, "--no-controller", help="do not ask the controller for enrolled keys"
        ),
    ) -> None:
        """Find devices on the network and show their status (signed, spoofed, state)."""
        if no_controller:
            known: dict[str, str] = {}
            note = "not checked against enrolled keys (--no-controller)"
        else:
            known, note = enrolled_fingerprints(api, data_dir)
        err_console().print(note, markup=False, highlight=False)
        docs = asyncio.run(_discover(timeout, interface, probe, port, as_json, known))
        if as_json:
            print_json(docs)
