"""``hwfleet tasks``, ``hwfleet events`` and ``hwfleet retention``: what the fleet is doing
and did, and how long the store keeps it.

The tasks table names each device by its name, or (unnamed, or removed since) by the
shortest uuid prefix unique in the fleet, which works as a target."""

from __future__ import annotations

import json
import time
from typing import Annotated, Any

import typer

from hwfleet.cli.client import ApiClient, CliError
from hwfleet.cli.fleet import ApiOpt, DataOpt, JsonOpt
from hwfleet.cli.output import console, line, plain, print_json, table

TASK_COLUMNS = ("id", "device", "method", "state", "percent", "eta", "msg")


def device_labels(client: ApiClient, rows: list[dict[str, Any]]) -> dict[str, str]:
    """Each task's device as the table shows it: its name, else a unique uuid prefix."""
    from hwfleet.targeting import short_prefixes

    fleet = client.get("/api/v1/devices", params={"discovered": "false"}) if rows else []
    names = {d["uuid"]: d.get("name") or "" for d in fleet}
    prefixes = short_prefixes([*names, *(r["device_uuid"] for r in rows)])
    return {u: names.get(u) or p for u, p in prefixes.items()}


def _task_table(rows: list[dict[str, Any]], labels: dict[str, str] | None = None) -> Any:
    labels = labels or {}
    cells = []
    for r in rows:
        pct = r.get("percent")
        cells.append(
            (
                r["id"][:8],
                labels.get(r["device_uuid"]) or r["device_uuid"],
                r["method"],
                r["state"],
                "" if pct is None else f"{pct:.0f}%",
                "" if r.get("eta") is None else f"{r['eta']:.0f}s",
                r.get("msg") or "",
            )
        )
    return table(f"{len(rows)} tasks", TASK_COLUMNS, cells)


def register(app: typer.Typer) -> None:
    group = typer.Typer(help="List tasks (long commands); `tasks cancel ID` stops one.")
    app.add_typer(group, name="tasks")

    @group.callback(invoke_without_command=True)
    def tasks(
        ctx: typer.Context,
        watch: Annotated[bool, typer.Option(help="refresh until every task has ended")] = False,
        device: Annotated[
            str | None, typer.Option(help="only the tasks of the devices this target selects")
        ] = None,
        since: Annotated[
            str | None, typer.Option(help="only tasks changed since: 1h, 30m, or an ISO time")
        ] = None,
        state: Annotated[
            str | None, typer.Option(help="only tasks in these states: error, lost, running…")
        ] = None,
        limit: Annotated[int, typer.Option(min=1, max=5000, help="at most this many")] = 200,
        api: ApiOpt = None,
        data_dir: DataOpt = None,
        as_json: JsonOpt = False,
    ) -> None:
        """List tasks (long commands) with progress, newest first."""
        if ctx.invoked_subcommand is not None:
            return
        from hwfleet.cli.targets import FULL_UUID

        params: dict[str, Any] = {"limit": limit}
        # A whole uuid names the device even after it is removed (its tasks' history stays).
        by = "device" if device and FULL_UUID.match(device) else "target"
        for key, value in ((by, device), ("since", since), ("state", state)):
            if value:
                params[key] = value
        with ApiClient(api, data_dir) as client:
            rows = client.get("/api/v1/tasks", params=params)
            if as_json:
                print_json(rows)
                return
            labels = device_labels(client, rows)
            if not watch:
                console().print(_task_table(rows, labels))
                return
            from rich.live import Live

            with Live(_task_table(rows, labels), console=console(), refresh_per_second=4) as live:
                while any(r["state"] in ("pending", "running") for r in rows):
                    time.sleep(0.5)  # refresh period of a live display
                    rows = client.get("/api/v1/tasks", params=params)
                    if any(r["device_uuid"] not in labels for r in rows):
                        labels = device_labels(client, rows)  # a device new to the table
                    live.update(_task_table(rows, labels))

    @group.command("cancel")
    def cancel(
        task_id: Annotated[str, typer.Argument(help="the task's id (or the start of it)")],
        wait: Annotated[bool, typer.Option(help="wait until the device has stopped it")] = False,
        timeout: Annotated[float, typer.Option(min=0.1, help="seconds --wait waits")] = 60.0,
        api: ApiOpt = None,
        data_dir: DataOpt = None,
        as_json: JsonOpt = False,
    ) -> None:
        """Stop a running task at its next safe point; it ends in error "cancelled"."""
        with ApiClient(api, data_dir, timeout=timeout + 30) as client:
            task = client.post(f"/api/v1/tasks/{task_id}/cancel")
            deadline = time.monotonic() + timeout
            while wait and task["state"] in ("pending", "running"):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise CliError(f"task {task['id']} was still running after {timeout:g} s")
                task = client.get(f"/api/v1/tasks/{task['id']}", params={"wait": min(left, 5.0)})
        if as_json:
            print_json(task)
            return
        done = f"{task['state']}: {task.get('msg')}" if task["state"] != "running" else ""
        state = done or "cancelling at its next safe point"
        console().print(plain(f"task {task['id']}: {state} (device {task['device_uuid']})"))

    @app.command("retention")
    def retention(api: ApiOpt = None, data_dir: DataOpt = None, as_json: JsonOpt = False) -> None:
        """How long events and finished tasks are kept, and how many the pruner deleted."""
        with ApiClient(api, data_dir) as client:
            report = client.get("/api/v1/retention")
        if as_json:
            print_json(report)
            return

        def days(value: float) -> str:
            return f"{value:g} days" if value else "kept for ever"

        last, total = report["last"], report["total"]
        out = console()
        out.print(plain(f"events: {days(report['events_days'])}"))
        out.print(plain(f"finished tasks: {days(report['tasks_days'])}"))
        out.print(plain(f"pruned every {report['interval_seconds']:g}s; runs: {report['runs']}"))
        if report["last_run_at"]:
            out.print(
                plain(
                    f"last run {report['last_run_at']}: {last.get('events', 0)} events, "
                    f"{last.get('tasks', 0)} tasks deleted"
                )
            )
        out.print(
            plain(
                f"deleted since start: {total.get('events', 0)} events, "
                f"{total.get('tasks', 0)} tasks"
            )
        )

    @app.command("events")
    def events(
        follow: Annotated[bool, typer.Option(help="keep printing new events")] = False,
        pattern: Annotated[str, typer.Option(help="routing-key pattern (* and #)")] = "#",
        since: Annotated[
            str | None, typer.Option(help="only events since: 1h, 30m, or an ISO time")
        ] = None,
        limit: Annotated[
            int, typer.Option(min=0, help="how many of the latest matching events (0: none)")
        ] = 50,
        api: ApiOpt = None,
        data_dir: DataOpt = None,
        as_json: JsonOpt = False,
    ) -> None:
        """Show the latest events, oldest first; --follow tails the events exchange
        (JSON lines with --json)."""
        with ApiClient(api, data_dir) as client:
            rows = latest_events(client, pattern, limit, since)
            if as_json and not follow:
                print_json(rows)
                return
            for row in rows:
                _print_event(row, as_json)
            if follow:
                cursor = rows[-1]["id"] if rows else _newest_id(client)
                _follow(client, pattern, cursor, as_json)


#: The largest page the API serves.
PAGE = 5000


def latest_events(
    client: ApiClient, pattern: str, limit: int, since: str | None = None
) -> list[dict[str, Any]]:
    """The newest ``limit`` events matching ``pattern`` (and ``since``), oldest first (paged
    from the newest)."""
    rows: list[dict[str, Any]] = []
    params: dict[str, Any] = {"pattern": pattern}
    if since:
        params["since"] = since
    while len(rows) < limit:
        params["limit"] = min(PAGE, limit - len(rows))
        page: list[dict[str, Any]] = client.get("/api/v1/events", params=params)
        rows += page
        if len(page) < params["limit"]:
            break
        params["before"] = page[-1]["id"]
    rows.reverse()
    return rows


def _newest_id(client: ApiClient) -> int:
    newest = client.get("/api/v1/events", params={"limit": 1})
    return int(newest[0]["id"]) if newest else 0


def _as_streamed(row: dict[str, Any]) -> dict[str, Any]:
    """One shape for --follow: the stream replays stored rows (``routing_key``/``payload``)
    beside live bus messages (``key``/``data``); scripts reading the output see the latter."""
    if "key" in row or "routing_key" not in row:
        return row
    return {
        "id": row.get("id"),
        "at": row.get("at"),
        "key": row["routing_key"],
        "data": row.get("payload", {}),
    }


def _print_event(row: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print(json.dumps(row), flush=True)
        return
    at = row.get("at", "")
    key = row.get("routing_key") or row.get("key", "")
    payload = row.get("payload", row.get("data", {}))
    console().print(line((str(at), "dim"), " ", (str(key), "bold"), f" {json.dumps(payload)}"))


def _follow(client: ApiClient, pattern: str, after: int, as_json: bool) -> None:
    """Print events after id ``after`` as they come (the stream replays any missed since)."""
    import httpx

    params: dict[str, Any] = {"pattern": pattern, "after": after}
    try:
        with client._http.stream(
            "GET", "/api/v1/events/stream", params=params, timeout=None
        ) as response:
            for line in response.iter_lines():
                if line.startswith("data:"):
                    data = json.loads(line[5:].strip())
                    if data:
                        _print_event(_as_streamed(data), as_json)
    except httpx.HTTPError as exc:
        raise CliError(f"event stream ended: {exc}") from None
    except KeyboardInterrupt:
        return
