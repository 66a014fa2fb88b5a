"""``hwfleet mdp``: talk to machines' diagnostics endpoints (seed 002, DESIGN §13).

These commands speak MDP v2 over UDP directly, with the key the controller mirrored to
``<data-dir>/.known_machines/<ip>.txt`` (so they run on the controller's machine, or
anywhere that directory is copied to). ``status`` shows the reports the controller
collected, through its API (``GET /api/v1/mdp/status``) when ``HWFLEET_API`` is set.
"""

from __future__ import annotations

import json
import os
import socket
import time
from typing import Annotated, Any

import typer

from hwfleet.cli.client import CliError

Opt = typer.Option
DataOpt = Annotated[
    str | None, Opt("--data-dir", help="the controller's data dir (.known_machines, reports)")
]
JsonOpt = Annotated[bool, Opt("--json", help="one JSON document on stdout")]
PortOpt = Annotated[int, Opt("--port", help="the endpoint's UDP port", min=1, max=65535)]
TimeoutOpt = Annotated[float, Opt("--timeout", help="seconds to wait for a reply", min=0.1)]


def _data_dir(data_dir: str | None) -> str:
    from hwfleet.settings import default_data_dir

    return data_dir or os.environ.get("HWFLEET_DATA_DIR") or default_data_dir()


def _address(host: str) -> str:
    try:
        return str(socket.getaddrinfo(host, None, socket.AF_INET, socket.SOCK_DGRAM)[0][4][0])
    except (socket.gaierror, IndexError):
        raise CliError(f"{host!r} does not resolve to an IPv4 address") from None


def _key_for(data_dir: str, ip: str) -> bytes:
    from hwfleet.mdp.keys import KeyFileError, KnownMachines

    known = KnownMachines(data_dir)
    try:
        key = known.get(ip)
    except KeyFileError as exc:
        raise CliError(str(exc)) from None
    if key is None:
        raise CliError(
            f"no key for {ip} in {known.root} — the controller records it when the device "
            "enrolls (or run hwfleet bootstrap on it); --data-dir names the controller's dir"
        )
    return key


def _call(
    host: str, data_dir: str | None, port: int, timeout: float, ops: list[dict[str, Any]],
    cluster_info: dict[str, Any] | None = None,
) -> dict[str, Any]:  # fmt: skip
    from hwfleet.cli.common import run
    from hwfleet.mdp.client import MdpNoReply, call

    ip = _address(host)
    key = _key_for(_data_dir(data_dir), ip)
    try:
        return run(call(ip, key, ops, port=port, cluster_info=cluster_info, timeout=timeout))
    except MdpNoReply as exc:
        raise CliError(str(exc)) from None
    except OSError as exc:
        raise CliError(f"cannot send to {ip}:{port}: {exc.strerror or exc}") from None


def register(app: typer.Typer) -> None:
    mdp = typer.Typer(help="Machine diagnostics over UDP (seed 002).", no_args_is_help=True)
    app.add_typer(mdp, name="mdp")

    @mdp.command("call")
    def call_(
        host: str,
        operation: str,
        arg: Annotated[list[str] | None, Opt("--arg", help="NAME=VALUE (repeatable)")] = None,
        port: PortOpt = 12345,
        timeout: TimeoutOpt = 5.0,
        data_dir: DataOpt = None,
        as_json: JsonOpt = False,
    ) -> None:
        """Run one operation on HOST and print its result (exit 1 when it failed)."""
        from hwfleet.cli.fleet import parse_params

        ops = [{"name": operation, "args": parse_params(arg or [], "--arg")}]
        reply = _call(host, data_dir, port, timeout, ops)
        if as_json:
            from hwfleet.cli.output import print_json

            print_json(reply)
        else:
            for entry in reply["operations"]:
                if entry.get("status"):
                    typer.echo(json.dumps(entry.get("result"), indent=2, sort_keys=True))
                else:
                    typer.echo(f"{entry.get('name')}: failed: {entry.get('error')}", err=True)
        if not reply["status"]:
            raise typer.Exit(1)

    @mdp.command("methods")
    def methods(
        host: str,
        port: PortOpt = 12345,
        timeout: TimeoutOpt = 5.0,
        data_dir: DataOpt = None,
        as_json: JsonOpt = False,
    ) -> None:
        """List the operations HOST answers, with their help."""
        reply = _call(host, data_dir, port, timeout, [{"name": "get_available_methods"}])
        entry = reply["operations"][0]
        if not entry.get("status"):
            raise CliError(f"get_available_methods failed: {entry.get('error')}")
        helps: dict[str, str] = entry["result"]
        if as_json:
            from hwfleet.cli.output import print_json

            print_json(helps)
            return
        from hwfleet.cli.output import console, table

        # Docstrings wrap at the source's width; the table wraps them again.
        rows = [[name, " ".join(text.split())] for name, text in sorted(helps.items())]
        console().print(table(f"operations of {host}", ["operation", "help"], rows))

    @mdp.command("status")
    def status(
        data_dir: DataOpt = None,
        api: Annotated[
            str | None, Opt("--api", help="ask the controller's API (default: HWFLEET_API)")
        ] = None,
        as_json: JsonOpt = False,
    ) -> None:
        """The latest report each machine sent to this controller (--mdp-report-listen):
        from its API when --api or HWFLEET_API is set, else from --data-dir."""
        if api or os.environ.get("HWFLEET_API"):
            from hwfleet.cli.client import ApiClient

            with ApiClient(api, data_dir) as client:
                reports: list[dict[str, Any]] = client.get("/api/v1/mdp/status")
        else:
            from hwfleet.mdp.reports import latest_reports

            reports = latest_reports(_data_dir(data_dir))
        if as_json:
            from hwfleet.cli.output import print_json

            print_json(reports)
            return
        from hwfleet.cli.output import console, table

        now = time.time()
        rows = [_status_row(r, now) for r in reports]
        cols = ["address", "machine", "age", "load", "mem avail MiB", "disks", "failed ops"]
        console().print(table("latest diagnostics reports", cols, rows))
        if not reports:
            typer.echo("no reports yet (agents send them with --mdp-report-to)", err=True)

    from hwfleet.cli.mdp_cluster import register_cluster

    register_cluster(mdp, _call)


def _status_row(report: dict[str, Any], now: float) -> list[object]:
    ops = report.get("operations", {})
    lm = ops.get("load_and_memory", {}).get("result") or {}
    disks = (ops.get("disk_health", {}).get("result") or {}).get("disks", [])
    health = ",".join(
        "ok" if d.get("passed") else ("FAIL" if d.get("passed") is False else "?") for d in disks
    )
    failed = [name for name, entry in ops.items() if not entry.get("status")]
    return [
        report.get("ip", ""),
        report.get("machine", ""),
        f"{now - float(report.get('received_at', now)):.0f}s",
        " ".join(str(x) for x in lm.get("load", [])),
        lm.get("mem_available_mb", ""),
        health or "-",
        ",".join(failed) or "-",
    ]
