"""``hwfleet scan [--wait] [--timeout S] [--json]``: run a burn-in scan through the controller.

Without ``--wait`` it prints the new operationid. With ``--wait`` a progress
bar (on stderr) counts devices answered / expected until the scan finishes,
then a table shows each device: sn, MACs passed and failed, result, reason.
``--json`` waits too and prints exactly one document on stdout: the seed-000
deviceScan document. ``--timeout S`` is this scan's quiet timeout: the scan
ends S seconds after the last reply (default: the controller's setting).
"""

from __future__ import annotations

import time
from typing import Annotated, Any

import typer

from hwfleet.cli.client import ApiClient, CliError
from hwfleet.cli.fleet import ApiOpt, DataOpt, JsonOpt
from hwfleet.cli.output import console, err_console, print_json
from hwfleet.cli.params import duration

#: How often a waiting CLI asks for progress (seconds).
POLL = 0.25


def _wait(client: ApiClient, operationid: int, quiet: float | None, show: bool) -> dict[str, Any]:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    # The controller guarantees an end (quiet timeout); this only guards against a stuck one.
    limit = max(120.0, 30 * (quiet or 10.0))
    deadline = time.monotonic() + limit
    path = f"/api/v1/scans/{operationid}"
    scan: dict[str, Any] = client.get(path, params={"results": "false"})
    with Progress(
        TextColumn(f"[bold]scan {operationid}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("devices answered"),
        TimeElapsedColumn(),
        console=err_console(),
        disable=not show,
        transient=False,
    ) as progress:
        bar = progress.add_task("scan", total=scan["expected"] or None)
        while scan["state"] == "running":
            if time.monotonic() > deadline:
                raise CliError(
                    f"scan {operationid} still running after {limit:.0f} s: "
                    f"check `curl $HWFLEET_API{path}` and the controller's log"
                )
            time.sleep(POLL)  # the refresh period of the progress display
            scan = client.get(path, params={"results": "false"})
            progress.update(bar, completed=scan.get("answered", 0))
        progress.update(bar, completed=scan.get("answered", 0))
    return scan


def _table(scan: dict[str, Any]) -> Any:
    from rich.table import Table

    document = scan.get("document") or {"scaninfo": []}
    entries = document["scaninfo"]
    passed = sum(1 for e in entries if e.get("result") == "1")
    table = Table(
        title=f"scan {scan['operationid']}: {passed} of {len(entries)} devices passed",
        header_style="bold",
    )
    for name in ("sn", "MACs passed", "MACs failed", "result", "reason"):
        table.add_column(name)
    for entry in sorted(entries, key=lambda e: str(e.get("sn"))):
        macs = entry.get("macinfo", [])
        ok = [m["macaddr"] for m in macs if m.get("scanstatus") == "1"]
        bad = [m["macaddr"] for m in macs if m.get("scanstatus") != "1"]
        result = "[green]pass[/green]" if entry.get("result") == "1" else "[red]fail[/red]"
        table.add_row(
            str(entry.get("sn")),
            "\n".join(ok) or "-",
            "\n".join(bad) or "-",
            result,
            entry.get("error") or ("" if entry.get("result") == "1" else "MACs differ from MES"),
        )
    return table


def register(app: typer.Typer) -> None:
    @app.command("scan")
    def scan(
        wait: Annotated[bool, typer.Option(help="follow the scan and show the results")] = False,
        timeout: Annotated[
            float | None,
            typer.Option(
                help="quiet timeout for this scan (time without a reply)",
                parser=duration(minimum=0.1),
                metavar="DURATION",
            ),
        ] = None,
        api: ApiOpt = None,
        data_dir: DataOpt = None,
        as_json: JsonOpt = False,
    ) -> None:
        """Scan every online device against the MES (seed 000)."""
        body: dict[str, Any] = {} if timeout is None else {"quiet_timeout": timeout}
        with ApiClient(api, data_dir) as client:
            started = client.post("/api/v1/scans", json=body)
            operationid = int(started["operationid"])
            if not wait and not as_json:
                console().print(
                    f"scan {operationid} started; follow it with `hwfleet scan --wait` or "
                    f"GET /api/v1/scans/{operationid}"
                )
                return
            result = _wait(client, operationid, timeout, show=wait)
        if result.get("error"):
            err_console().print(f"[red]scan {operationid}: {result['error']}[/red]")
        if as_json:
            print_json(result.get("document"))
            return
        console().print(_table(result))
