"""Burn-in scans through the controller: ``hwfleet scan``, ``scan show OP`` and ``scans``.

``hwfleet scan [--wait] [--timeout S] [--json]`` starts a scan. Without ``--wait``
it prints the new operationid and how to follow it. With ``--wait`` a progress bar
(on stderr) counts devices answered / expected until the scan finishes, then a
table shows each device: sn, MACs passed and failed, result, reason. ``--json``
waits too and prints exactly one document on stdout: the seed-000 deviceScan
document. ``--timeout S`` is this scan's quiet timeout: the scan ends S seconds
after the last reply (default: the controller's setting). Only one scan runs at a
time (two would both post to the MES): while one runs, ``scan`` says which.

``hwfleet scan show OP [--wait] [--json]`` follows a running scan or reviews a past
one, with the state of its posts to the MES; ``hwfleet scans [--json]`` lists past
and running scans, newest first, with their counts.
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


def _deliveries(scan: dict[str, Any]) -> Any:
    from rich.table import Table

    table = Table(title=f"scan {scan['operationid']}: posts to the MES", header_style="bold")
    for name in ("post", "state", "attempts", "last error", "delivered at"):
        table.add_column(name)
    for post in scan.get("mes") or []:
        table.add_row(
            post["kind"],
            post["state"],
            str(post["attempts"]),
            post.get("last_error") or "",
            post.get("delivered_at") or "",
        )
    return table


def _show(scan: dict[str, Any]) -> None:
    """A scan for a terminal: its devices once finished, and its MES deliveries."""
    if scan.get("error"):
        err_console().print(f"[red]scan {scan['operationid']}: {scan['error']}[/red]")
    if scan["state"] == "running":
        console().print(
            f"scan {scan['operationid']}: running, {scan.get('answered', 0)} devices answered "
            f"({scan['expected']} expected); follow it with "
            f"`hwfleet scan show {scan['operationid']} --wait`"
        )
        return
    console().print(_table(scan))
    if scan.get("mes"):
        console().print(_deliveries(scan))
    else:
        console().print(f"scan {scan['operationid']}: nothing posted to the MES (none configured)")


def _list_table(rows: list[dict[str, Any]]) -> Any:
    from rich.table import Table

    table = Table(title=f"{len(rows)} scans", header_style="bold")
    for name in ("scan", "state", "started", "finished", "expected", "answered", "passed"):
        table.add_column(name)
    for r in rows:
        table.add_row(
            str(r["operationid"]),
            r["state"],
            r["started_at"],
            r.get("finished_at") or "",
            str(r["expected"]),
            str(r.get("answered", "")),
            "" if r.get("passed") is None else str(r["passed"]),
        )
    return table


def register(app: typer.Typer) -> None:
    group = typer.Typer(help="Scan every online device against the MES (seed 000).")

    @group.callback(invoke_without_command=True)
    def scan(
        ctx: typer.Context,
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
        """Scan every online device against the MES (seed 000); `scan show OP` follows one."""
        if ctx.invoked_subcommand is not None:
            return
        body: dict[str, Any] = {} if timeout is None else {"quiet_timeout": timeout}
        with ApiClient(api, data_dir) as client:
            started = client.post("/api/v1/scans", json=body)
            operationid = int(started["operationid"])
            if not wait and not as_json:
                console().print(
                    f"scan {operationid} started; follow it with "
                    f"`hwfleet scan show {operationid} --wait`"
                )
                return
            result = _wait(client, operationid, timeout, show=wait)
        if result.get("error"):
            err_console().print(f"[red]scan {operationid}: {result['error']}[/red]")
        if as_json:
            print_json(result.get("document"))
            return
        console().print(_table(result))

    @group.command("show")
    def show(
        operationid: Annotated[int, typer.Argument(help="the scan's operationid", min=1)],
        wait: Annotated[bool, typer.Option(help="follow a running scan to its end")] = False,
        api: ApiOpt = None,
        data_dir: DataOpt = None,
        as_json: JsonOpt = False,
    ) -> None:
        """Follow a running scan (progress bar) or review a past one, with its MES posts."""
        with ApiClient(api, data_dir) as client:
            if wait:
                _wait(client, operationid, None, show=not as_json)
            scan = client.get(f"/api/v1/scans/{operationid}", params={"results": "false"})
        if as_json:
            print_json(scan)
            return
        _show(scan)

    app.add_typer(group, name="scan")

    @app.command("scans")
    def scans(
        limit: Annotated[int, typer.Option(help="how many of the latest scans", min=1)] = 50,
        api: ApiOpt = None,
        data_dir: DataOpt = None,
        as_json: JsonOpt = False,
    ) -> None:
        """List past and running scans, newest first, with their counts."""
        with ApiClient(api, data_dir) as client:
            rows = client.get("/api/v1/scans", params={"limit": min(limit, 1000)})
        if as_json:
            print_json(rows)
            return
        console().print(_list_table(rows))
