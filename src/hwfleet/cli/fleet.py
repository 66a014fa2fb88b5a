"""Operator commands on devices: ``devices``, ``ping``, ``run``."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from hwfleet.cli.client import ApiClient, CliError
from hwfleet.cli.output import print_json, print_table
from hwfleet.cli.params import POSITIVE_DURATION

Opt = typer.Option
ApiOpt = Annotated[str | None, Opt("--api", help="controller API URL (HWFLEET_API)")]
DataOpt = Annotated[str | None, Opt("--data-dir", help="where operator.token lives")]
JsonOpt = Annotated[bool, Opt("--json", help="one JSON document on stdout")]

DEVICE_KEYS = (
    "uuid",
    "name",
    "serial",
    "model_id",
    "version",
    "ipaddr",
    "st_id",
    "state",
    "last_seen",
)


def parse_params(items: list[str], flag: str = "--param") -> dict[str, Any]:
    """``k=v`` pairs; a value that parses as JSON is taken as JSON (numbers, lists, …)."""
    params: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise CliError(f"{flag} {item!r} is not key=value")
        try:
            params[key] = json.loads(value)
        except ValueError:
            params[key] = value
    return params


def register(app: typer.Typer) -> None:
    @app.command("devices")
    def devices(api: ApiOpt = None, data_dir: DataOpt = None, as_json: JsonOpt = False) -> None:
        """List devices the controller knows."""
        with ApiClient(api, data_dir) as client:
            rows = client.get("/api/v1/devices")
        if as_json:
            print_json([{k: row.get(k) for k in DEVICE_KEYS} for row in rows])
            return
        print_table(
            f"{len(rows)} devices",
            rows,
            [
                ("uuid", lambda r: r["uuid"]),
                ("name", lambda r: r["name"]),
                ("serial", lambda r: r["serial"]),
                ("model", lambda r: r["model_id"]),
                ("ipaddr", lambda r: r["ipaddr"]),
                ("state", lambda r: r["state"]),
                ("kind", lambda r: r.get("kind", "agent")),
                ("st_id", lambda r: r["st_id"]),
                ("last seen", lambda r: r["last_seen"]),
            ],
        )

    @app.command("ping")
    def ping(
        uuids: Annotated[list[str] | None, typer.Argument(help="device uuids")] = None,
        all_: Annotated[bool, Opt("--all", help="every connected device")] = False,
        timeout: Annotated[
            float,
            Opt(
                parser=POSITIVE_DURATION,
                metavar="DURATION",
                help="how long to wait for each device",
            ),
        ] = 5.0,
        api: ApiOpt = None,
        data_dir: DataOpt = None,
        as_json: JsonOpt = False,
    ) -> None:
        """Ping devices through the controller: {uuid: {"ok", "rtt_ms"}}."""
        if all_ == bool(uuids):
            raise CliError("give either --all or one or more device uuids")
        body = {"all": True} if all_ else {"uuids": uuids}
        with ApiClient(api, data_dir, timeout=timeout + 30) as client:
            result = client.post("/api/v1/devices/ping", json={**body, "timeout": timeout})
        if as_json:
            print_json({u: {"ok": r["ok"], "rtt_ms": r["rtt_ms"]} for u, r in result.items()})
        else:
            rows = [{"uuid": u, **r} for u, r in result.items()]
            ok = sum(1 for r in rows if r["ok"])
            print_table(
                f"{ok}/{len(rows)} answered",
                rows,
                [
                    ("uuid", lambda r: r["uuid"]),
                    ("ok", lambda r: "yes" if r["ok"] else "NO"),
                    ("rtt ms", lambda r: r["rtt_ms"]),
                    ("error", lambda r: r.get("error")),
                ],
            )
        if any(not r["ok"] for r in result.values()):
            raise typer.Exit(2)

    @app.command("run")
    def run_command(
        uuid: Annotated[str, typer.Argument(help="device uuid")],
        method: Annotated[str, typer.Argument(help="e.g. status, inventory, decom.qc")],
        param: Annotated[list[str] | None, Opt("--param", help="k=v (JSON values allowed)")] = None,
        wait: Annotated[bool, Opt(help="for long commands: follow the task to its end")] = False,
        timeout: Annotated[
            float, Opt(parser=POSITIVE_DURATION, metavar="DURATION", help="how long to wait")
        ] = 3600.0,
        api: ApiOpt = None,
        data_dir: DataOpt = None,
        as_json: JsonOpt = False,
    ) -> None:
        """Run a command on a device; long commands become tasks."""
        from hwfleet.cli.progress import follow_task

        params = parse_params(param or [])
        with ApiClient(api, data_dir, timeout=60) as client:
            reply = client.post(
                f"/api/v1/devices/{uuid}/run", json={"method": method, "params": params}
            )
            if "task" in reply and wait:
                reply = {"task": follow_task(client, reply["task"]["id"], timeout, quiet=as_json)}
        if as_json:
            print_json(reply)
        elif "task" in reply:
            task = reply["task"]
            typer.echo(
                f"task {task['id']}: {task['state']}"
                + (f" — {task['msg']}" if task.get("msg") else "")
            )
            if task.get("result"):
                typer.echo(json.dumps(task["result"], indent=2))
        else:
            typer.echo(json.dumps(reply["result"], indent=2))
        if "task" in reply and reply["task"]["state"] == "error":
            raise typer.Exit(2)
