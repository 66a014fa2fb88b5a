"""``hwfleet mdp cluster HOST… --sync FOLDER``: put machines in sync_folders cluster mode.

Before the ``cluster_info`` itself, the members' folder-sync SSH trust is set up over the
authenticated diagnostics channel (hwfleet.mdp.trust): each member's ``cluster_identity``
(its sync key, made at first use, and its sshd host key) is handed to every other member
with ``cluster_trust``, so no key is handled by the operator. Members that ``hwfleet
bootstrap --cluster-sync FOLDER`` already made trust each other for that folder skip it
(the controller's ``bootstrap_cluster.json`` says so); ``--no-keys`` skips it always.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

import typer

from hwfleet.cli.client import CliError

Opt = typer.Option
Call = Callable[..., dict[str, Any]]


def _entry(reply: dict[str, Any], name: str) -> dict[str, Any]:
    for entry in reply.get("operations", []):
        if entry.get("name") == name:
            if not entry.get("status"):
                raise CliError(f"{name}: {entry.get('error')}")
            return dict(entry.get("result") or {})
    raise CliError(f"{name}: no answer")


def exchange_keys(call: Call, members: list[str], folder: str, *args: Any) -> dict[str, str]:
    """Trust every member's sync key on every other member; host -> error for failures."""
    from hwfleet.mdp.operations.cluster_ops import MAX_TRUST_PEERS

    identities: dict[str, dict[str, Any]] = {}
    errors: dict[str, str] = {}
    for host in members:
        try:
            reply = call(host, *args, [{"name": "cluster_identity"}])
            identities[host] = _entry(reply, "cluster_identity")
        except CliError as exc:
            errors[host] = f"identity: {exc}"
    for host in identities:
        peers = [(ip, ident) for ip, ident in identities.items() if ip != host]
        for start in range(0, len(peers), MAX_TRUST_PEERS):
            chunk = dict(peers[start : start + MAX_TRUST_PEERS])
            op = {"name": "cluster_trust", "args": {"folder": folder, "peers": chunk}}
            try:
                _entry(call(host, *args, [op]), "cluster_trust")
            except CliError as exc:
                errors[host] = f"trust: {exc}"
                break
    return errors


def register_cluster(mdp: typer.Typer, call: Call) -> None:
    @mdp.command("cluster")
    def cluster(
        hosts: list[str],
        sync: Annotated[str, Opt("--sync", help="absolute folder to keep converged")],
        port: Annotated[int, Opt("--port", min=1, max=65535)] = 12345,
        timeout: Annotated[float, Opt("--timeout", min=0.1)] = 10.0,
        keys: Annotated[
            bool, Opt("--keys/--no-keys", help="hand the members' sync keys to each other")
        ] = True,
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
        from hwfleet.bootstrap.cluster import installed_for
        from hwfleet.cli.mdp import _data_dir

        how = "skipped"
        failed: dict[str, str] = {}
        if keys and installed_for(_data_dir(data_dir), sync, members):
            how = "bootstrap"
        elif keys:
            how = "exchanged"
            failed = exchange_keys(call, members, sync, data_dir, port, timeout)
        mode = {"name": "sync_folders", "folder": sync}
        info = {"cluster_machines": members, "cluster_mode": [mode]}
        answers: dict[str, Any] = {}
        for host in members:
            try:
                reply = call(host, data_dir, port, timeout, [], info)
                answers[host] = reply.get("cluster_info", {})
            except CliError as exc:
                answers[host] = {"error": str(exc)}
            answers[host]["keys"] = how
            if host in failed:
                answers[host]["error"] = failed[host]
        _show(answers, sync, as_json)
        if any("error" in a for a in answers.values()):
            raise typer.Exit(1)


def _show(answers: dict[str, Any], sync: str, as_json: bool) -> None:
    if as_json:
        from hwfleet.cli.output import print_json

        print_json(answers)
        return
    from hwfleet.cli.output import console, table

    rows = []
    for host, ans in answers.items():
        modes = ans.get("machine_mode", [])
        perf = modes[0].get("performance", "") if modes else ""
        rows.append([host, perf, ans.get("keys", ""), ans.get("error", "")])
    cols = ["host", "performance", "keys", "error"]
    console().print(table(f"cluster sync {sync}", cols, rows))
