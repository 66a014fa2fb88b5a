"""``hwfleet mdp cluster HOST… --sync FOLDER``: put machines in sync_folders cluster mode."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

import typer

from hwfleet.cli.client import CliError

Opt = typer.Option


def register_cluster(mdp: typer.Typer, call: Callable[..., dict[str, Any]]) -> None:
    @mdp.command("cluster")
    def cluster(
        hosts: list[str],
        sync: Annotated[str, Opt("--sync", help="absolute folder to keep converged")],
        port: Annotated[int, Opt("--port", min=1, max=65535)] = 12345,
        timeout: Annotated[float, Opt("--timeout", min=0.1)] = 10.0,
        data_dir: Annotated[str | None, Opt("--data-dir")] = None,
        as_json: Annotated[bool, Opt("--json", help="one JSON document on stdout")] = False,
    ) -> None:
        """Tell each HOST the members and the folder; print each one's performance (1-9)."""
        import socket

        if not sync.startswith("/"):
            raise CliError("--sync needs an absolute folder")
        members = []
        for host in hosts:
            try:
                members.append(socket.gethostbyname(host))
            except OSError:
                raise CliError(f"{host!r} does not resolve") from None
        mode = {"name": "sync_folders", "folder": sync}
        info = {"cluster_machines": members, "cluster_mode": [mode]}
        answers: dict[str, Any] = {}
        for host in members:
            try:
                reply = call(host, data_dir, port, timeout, [], info)
                answers[host] = reply.get("cluster_info", {})
            except CliError as exc:
                answers[host] = {"error": str(exc)}
        if as_json:
            from hwfleet.cli.output import print_json

            print_json(answers)
        else:
            from hwfleet.cli.output import console, table

            rows = []
            for host, ans in answers.items():
                modes = ans.get("machine_mode", [])
                perf = modes[0].get("performance", "") if modes else ""
                rows.append([host, perf, ans.get("error", "")])
            console().print(table(f"cluster sync {sync}", ["host", "performance", "error"], rows))
        if any("error" in a for a in answers.values()):
            raise typer.Exit(1)
