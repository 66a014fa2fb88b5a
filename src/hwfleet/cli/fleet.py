"""Operator commands on devices: ``ping`` and ``run`` over a target (``devices``: listing.py)."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from hwfleet.cli import completion
from hwfleet.cli.client import ApiClient, CliError
from hwfleet.cli.options import ApiOpt, BatchOpt, DataOpt, JsonOpt, KeepGoingOpt
from hwfleet.cli.output import print_json, print_table
from hwfleet.cli.params import POSITIVE_DURATION
from hwfleet.cli.targets import DryRunOpt, TargetArg, TargetArgs

Opt = typer.Option
__all__ = ["ApiOpt", "DataOpt", "JsonOpt"]  # re-exported: command modules import them here

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
    @app.command("ping")
    def ping(
        words: TargetArgs = None,
        all_: Annotated[bool, Opt("--all", help="every connected device")] = False,
        timeout: Annotated[
            float,
            Opt(
                parser=POSITIVE_DURATION,
                metavar="DURATION",
                help="how long to wait for each device",
            ),
        ] = 5.0,
        dry_run: DryRunOpt = False,
        api: ApiOpt = None,
        data_dir: DataOpt = None,
        as_json: JsonOpt = False,
    ) -> None:
        """Ping devices through the controller: {uuid: {"ok", "rtt_ms"}}."""
        from hwfleet.cli.targets import resolve, show_selection, target_expr, whole_uuids

        expr = target_expr(words, all_)
        with ApiClient(api, data_dir, timeout=timeout + 30) as client:
            if dry_run:
                # ping --all means every connected device: the ones online now.
                expr = "state=online" if all_ else expr
                show_selection(expr, resolve(client, expr), as_json)
                return
            uuids = whole_uuids(words)
            if all_:
                body: dict[str, Any] = {"all": True}
            else:
                uuids = uuids or [d["uuid"] for d in resolve(client, expr)]
                if not uuids:
                    raise CliError(f"{expr!r} selects no devices")
                body = {"uuids": uuids}
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
        target: TargetArg,
        method: Annotated[
            str,
            typer.Argument(
                help="e.g. status, inventory, decom.qc", autocompletion=completion.method_names
            ),
        ],
        param: Annotated[list[str] | None, Opt("--param", help="k=v (JSON values allowed)")] = None,
        wait: Annotated[bool, Opt(help="for long commands: follow the task to its end")] = False,
        timeout: Annotated[
            float, Opt(parser=POSITIVE_DURATION, metavar="DURATION", help="how long to wait")
        ] = 3600.0,
        batch: BatchOpt = None,
        continue_on_error: KeepGoingOpt = False,
        dry_run: DryRunOpt = False,
        api: ApiOpt = None,
        data_dir: DataOpt = None,
        as_json: JsonOpt = False,
    ) -> None:
        """Run a command on the devices a target selects; long commands become tasks.

        One device named by uuid, prefix or name keeps the one-device output; any other
        target runs on each selected device with a live table and a summary.
        """
        from hwfleet.cli.targets import resolve, resolve_one, show_selection, whole_uuids
        from hwfleet.targeting import TargetError, is_single, parse

        params = parse_params(param or [])
        try:
            single = is_single(parse(target))
        except TargetError as exc:
            raise CliError(f"target: {exc}") from None
        with ApiClient(api, data_dir, timeout=60) as client:
            if dry_run:
                show_selection(target, resolve(client, target), as_json)
                return
            if single and batch is None:
                uuid = (whole_uuids([target]) or [resolve_one(client, target)])[0]
                _run_one(client, uuid, method, params, wait=wait, timeout=timeout, quiet=as_json)
                return
            run_many(
                client,
                target,
                method,
                params,
                follow=wait or batch is not None,
                timeout=timeout,
                batch=batch,
                keep_going=continue_on_error,
                as_json=as_json,
            )


def _run_one(
    client: ApiClient,
    uuid: str,
    method: str,
    params: dict[str, Any],
    *,
    wait: bool,
    timeout: float,
    quiet: bool,
) -> None:
    from hwfleet.cli.progress import follow_task

    reply = client.post(f"/api/v1/devices/{uuid}/run", json={"method": method, "params": params})
    if "task" in reply and wait:
        reply = {"task": follow_task(client, reply["task"]["id"], timeout, quiet=quiet)}
    if quiet:
        print_json(reply)
    elif "task" in reply:
        task = reply["task"]
        typer.echo(
            f"task {task['id']}: {task['state']}" + (f" — {task['msg']}" if task.get("msg") else "")
        )
        if task.get("result"):
            typer.echo(json.dumps(task["result"], indent=2))
    else:
        typer.echo(json.dumps(reply["result"], indent=2))
    if "task" in reply and reply["task"]["state"] == "error":
        raise typer.Exit(2)


def run_many(
    client: ApiClient,
    expr: str,
    method: str,
    params: dict[str, Any],
    *,
    follow: bool,
    timeout: float,
    batch: str | None,
    keep_going: bool,
    as_json: bool,
) -> None:
    from hwfleet.cli.fanout import Rollout, parse_batch
    from hwfleet.cli.targets import resolve

    devices = resolve(client, expr)
    if not devices:
        raise CliError(f"{expr!r} selects no devices")
    size = parse_batch(batch, len(devices))
    rollout = Rollout(client, devices, method, params, follow=follow, timeout=timeout)
    rollout.run(size, keep_going=keep_going, show=not as_json)
    if as_json:
        print_json(rollout.document(expr, size))
    summary = rollout.summary()
    if summary["error"] or summary["lost"] or summary["skipped"]:
        raise typer.Exit(2)
