"""``hwfleet bootstrap HOST…``: install and start the agent on machines reachable over SSH."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from hwfleet.cli.client import CliError

Opt = typer.Option


def register(app: typer.Typer) -> None:
    @app.command("bootstrap")
    def bootstrap(
        hosts: list[str],
        controller: Annotated[str, Opt(help="the gateway H:P the agents connect to")],
        user: Annotated[
            str, Opt("--user", help="SSH user: root, or one with passwordless sudo (sudo -n)")
        ] = "root",
        identity: Annotated[str | None, Opt("--identity", help="SSH private key file")] = None,
        known_hosts: Annotated[
            str | None,
            Opt(
                "--known-hosts",
                help="accept only keys in this file (default: trust on first "
                "use, recorded in <data-dir>/bootstrap_known_hosts)",
            ),
        ] = None,
        port: Annotated[int, Opt("--port", help="SSH port", min=1, max=65535)] = 22,
        root: Annotated[
            str, Opt("--root", help="install below this directory on the target")
        ] = "/",
        init: Annotated[str, Opt("--init", help="auto | systemd | sysvinit")] = "auto",
        agent_setting: Annotated[
            list[str] | None, Opt("--agent-setting", help="NAME=VALUE for the agent's config")
        ] = None,
        wheelhouse: Annotated[str | None, Opt("--wheelhouse", help="ready-made wheels")] = None,
        enroll_timeout: Annotated[float, Opt("--enroll-timeout", min=1)] = 120.0,
        parallel: Annotated[int, Opt("--parallel", min=1, max=256)] = 16,
        cluster_sync: Annotated[
            str | None,
            Opt(
                "--cluster-sync",
                help="FOLDER: install the folder-sync SSH keys among these hosts "
                "(rrsync -ro FOLDER) for `hwfleet mdp cluster --sync FOLDER`",
            ),
        ] = None,
        api: Annotated[str | None, Opt("--api", help="controller API URL (HWFLEET_API)")] = None,
        data_dir: Annotated[str | None, Opt("--data-dir", help="the controller's data dir")] = None,
        as_json: Annotated[bool, Opt("--json", help="one JSON document on stdout")] = False,
    ) -> None:
        """Install the agent over SSH, start it as a service and wait for it to enrol."""
        import asyncio
        import os
        from pathlib import Path

        from hwfleet.bootstrap.hostkeys import HostKeyPolicy
        from hwfleet.bootstrap.install import Job
        from hwfleet.bootstrap.run import bootstrap_all
        from hwfleet.bootstrap.units import Layout
        from hwfleet.bootstrap.wheels import WheelhouseError
        from hwfleet.bootstrap.wheels import wheelhouse as find_wheels
        from hwfleet.cli.client import ApiClient
        from hwfleet.cli.fleet import parse_params
        from hwfleet.settings import default_data_dir
        from hwfleet.types import parse_host_port

        if init not in ("auto", "systemd", "sysvinit"):
            raise CliError("--init must be auto, systemd or sysvinit")
        if cluster_sync is not None:
            from hwfleet.mdp.trust import TrustError, safe_folder

            try:
                safe_folder(cluster_sync)
            except TrustError as exc:
                raise CliError(f"--cluster-sync: {exc} (and must be absolute)") from None
        try:
            import asyncssh  # noqa: F401
        except ImportError:
            raise CliError("bootstrap needs asyncssh: pip install 'hwfleet[ssh]'") from None
        try:
            parse_host_port(controller)
        except ValueError as exc:
            raise CliError(f"--controller: {exc}") from None
        data = data_dir or os.environ.get("HWFLEET_DATA_DIR") or default_data_dir()
        if not wheelhouse and not as_json:
            from hwfleet import __version__
            from hwfleet.cli.output import err_console

            if not any((Path(data) / "wheelhouse" / __version__).glob("hwfleet-*.whl")):
                err_console().print(
                    f"building the wheelhouse for hwfleet {__version__} (pip wheel, once per "
                    "version; a minute or two)…"
                )
        try:
            wheels = find_wheels(data, wheelhouse)
        except WheelhouseError as exc:
            raise CliError(str(exc)) from None

        async def make_token() -> str:
            def post() -> str:
                with ApiClient(api, data) as client:
                    return str(client.post("/api/v1/keys/tokens", json={"ttl": 3600})["token"])

            return await asyncio.to_thread(post)

        job = Job(
            controller=controller,
            data_dir=data,
            wheelhouse=wheels,
            hostkeys=HostKeyPolicy(data, known_hosts),
            make_token=make_token,
            user=user,
            port=port,
            identity=identity,
            layout=Layout(root),
            agent_settings=parse_params(agent_setting or [], "--agent-setting"),
            enroll_timeout=enroll_timeout,
            init=init,
            cluster_folder=cluster_sync,
        )
        from hwfleet.cli.common import run

        results = run(bootstrap_all(job, hosts, show_progress=not as_json, parallel=parallel))
        _show(results, as_json)
        if any(r["status"] == "failed" for r in results):
            raise typer.Exit(1)


def _show(results: list[dict[str, Any]], as_json: bool) -> None:
    from hwfleet.cli.output import console, err_console, print_json, table

    if as_json:
        print_json(results)
        return
    for r in results:
        if r.get("first_use"):
            err_console().print(
                f"{r['host']}: first contact, host key {r['host_key']} trusted and recorded"
            )
    rows = [
        [r["host"], r["status"], r.get("uuid", ""), r.get("distro", ""), r.get("init", ""),
         f"{r.get('seconds', 0)}s", r.get("error", "")]
        for r in results
    ]  # fmt: skip
    cols = ["host", "result", "uuid", "distribution", "init", "time", "error"]
    if any("cluster_trust" in r for r in results):
        cols.insert(5, "cluster keys")
        for row, r in zip(rows, results, strict=True):
            row.insert(5, r.get("cluster_trust", ""))
    console().print(table("bootstrap", cols, rows))
