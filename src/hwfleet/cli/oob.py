"""``hwfleet bmc``, ``power``, ``sel``, ``sensors``, ``pollers``: out-of-band management.

Nodes are targets (docs/cli.md): ``power`` acts on every device a target selects
(``hwfleet power cycle 'G@rack1 and state=offline'``, ``--dry-run`` lists them); the
one-node commands take a target that selects exactly one device. A whole uuid is used
as given, so a BMC can be set for a node before its agent ever enrolls.

The BMC password is never a command-line argument (other users see those in ``ps``):
it comes from ``--password-file``, ``HWFLEET_BMC_PASSWORD`` or a hidden prompt (SNMPv3's
privacy passphrase likewise: ``--priv-password-file``, ``HWFLEET_BMC_PRIV_PASSWORD``).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from hwfleet.cli.client import ApiClient, CliError
from hwfleet.cli.fleet import ApiOpt, DataOpt, JsonOpt
from hwfleet.cli.output import console, print_json, print_table
from hwfleet.cli.targets import DryRunOpt, TargetArg, TargetArgs, resolve_one

PASSWORD_ENV = "HWFLEET_BMC_PASSWORD"  # noqa: S105  (the name of a variable)
PRIV_PASSWORD_ENV = "HWFLEET_BMC_PRIV_PASSWORD"  # noqa: S105  (SNMPv3's privacy passphrase)


def _password(
    password_file: Path | None, env: str = PASSWORD_ENV, prompt: str = "BMC password"
) -> str:
    if password_file is not None:
        try:
            return password_file.read_text().rstrip("\n")
        except OSError as exc:
            raise CliError(f"cannot read {password_file}: {exc.strerror}") from None
    if env in os.environ:
        return os.environ[env]
    if sys.stdin.isatty():
        return str(typer.prompt(prompt, hide_input=True, default="", show_default=False))
    return ""


def _snmp_v3(
    driver: str, user: str, auth: str, priv: str, priv_file: Path | None
) -> dict[str, str]:
    """The SNMPv3 fields of the request (none for v2c)."""
    if not user:
        if auth or priv or priv_file:
            raise CliError("--snmp-auth, --snmp-priv and --priv-password-file need --snmp-v3-user")
        return {}
    if driver != "snmp":
        raise CliError("--snmp-v3-user is for an SNMP agent (--snmp HOST)")
    return {
        "username": user,
        "priv_password": _password(priv_file, PRIV_PASSWORD_ENV, "SNMPv3 privacy passphrase"),
        "auth_protocol": auth.lower(),
        "priv_protocol": priv.lower(),
    }


def _address(redfish: str | None, ipmi: str | None, snmp: str | None) -> tuple[str, str]:
    given = [(d, a) for d, a in (("redfish", redfish), ("ipmi", ipmi), ("snmp", snmp)) if a]
    if len(given) != 1:
        raise CliError("give exactly one of --redfish URL, --ipmi HOST or --snmp HOST")
    return given[0]


def register(app: typer.Typer) -> None:
    bmc = typer.Typer(help="A node's BMC (baseboard management controller).", no_args_is_help=True)
    app.add_typer(bmc, name="bmc")

    @bmc.command("set")
    def bmc_set(
        uuid: TargetArg,
        redfish: Annotated[str | None, typer.Option(help="Redfish service URL")] = None,
        ipmi: Annotated[str | None, typer.Option(help="IPMI-over-LAN host")] = None,
        snmp: Annotated[str | None, typer.Option(help="SNMP agent host")] = None,
        username: Annotated[str, typer.Option(help="BMC user")] = "",
        password_file: Annotated[
            Path | None,
            typer.Option(help=f"file holding the password / community (or {PASSWORD_ENV})"),
        ] = None,
        port: Annotated[int, typer.Option(help="port (0: the protocol's own)")] = 0,
        insecure: Annotated[bool, typer.Option(help="Redfish: skip TLS verification")] = False,
        system: Annotated[str, typer.Option(help="Redfish: the ComputerSystem id")] = "",
        snmp_v3_user: Annotated[
            str,
            typer.Option(
                help="SNMPv3 (authPriv) USM user; the password is then the auth passphrase"
            ),
        ] = "",
        snmp_auth: Annotated[
            str, typer.Option(help="SNMPv3 auth: sha, sha224, sha256, sha384, sha512 (sha)")
        ] = "",
        snmp_priv: Annotated[
            str, typer.Option(help="SNMPv3 privacy: aes, aes192, aes256 (aes)")
        ] = "",
        priv_password_file: Annotated[
            Path | None,
            typer.Option(
                help=f"SNMPv3: file holding the privacy passphrase (or {PRIV_PASSWORD_ENV})"
            ),
        ] = None,
        api: ApiOpt = None,
        data_dir: DataOpt = None,
        as_json: JsonOpt = False,
    ) -> None:
        """Set a node's BMC; the credentials are stored encrypted and never shown."""
        driver, address = _address(redfish, ipmi, snmp)
        if driver == "snmp" and username:
            raise CliError("an SNMP agent has no --username: give --snmp-v3-user for SNMPv3")
        body = {
            "driver": driver,
            "address": address,
            "username": username,
            "password": _password(password_file),
            "port": port,
            "verify_tls": not insecure,
            "system": system,
            **_snmp_v3(driver, snmp_v3_user, snmp_auth, snmp_priv, priv_password_file),
        }
        with ApiClient(api, data_dir) as client:
            uuid = resolve_one(client, uuid)
            result = client.request("PUT", f"/api/v1/nodes/{uuid}/bmc", json=body)
        if as_json:
            print_json(result)
        else:
            console().print(f"{uuid}: {result['driver']} BMC at {result['address']}")

    @bmc.command("show")
    def bmc_show(
        uuid: TargetArg, api: ApiOpt = None, data_dir: DataOpt = None, as_json: JsonOpt = False
    ) -> None:
        """A node's BMC: driver, address, the latest error (never the credentials)."""
        with ApiClient(api, data_dir) as client:
            uuid = resolve_one(client, uuid)
            result = client.get(f"/api/v1/nodes/{uuid}/bmc")
        if as_json:
            print_json(result)
        else:
            for key, value in result.items():
                console().print(f"{key}: {value}")

    @bmc.command("list")
    def bmc_list(api: ApiOpt = None, data_dir: DataOpt = None, as_json: JsonOpt = False) -> None:
        """Every node with a BMC."""
        with ApiClient(api, data_dir) as client:
            rows = client.get("/api/v1/bmcs")
        if as_json:
            print_json(rows)
            return
        cols = [(k, lambda r, k=k: r.get(k) or "") for k in ("node", "driver", "last_error")]
        print_table(f"{len(rows)} BMCs", rows, cols)

    @bmc.command("delete")
    def bmc_delete(
        uuid: TargetArg, api: ApiOpt = None, data_dir: DataOpt = None, as_json: JsonOpt = False
    ) -> None:
        """Forget a node's BMC and its pollers."""
        with ApiClient(api, data_dir) as client:
            uuid = resolve_one(client, uuid)
            result = client.delete(f"/api/v1/nodes/{uuid}/bmc")
        print_json(result) if as_json else console().print(f"{uuid}: BMC deleted")

    @app.command("power")
    def power(
        action: Annotated[str, typer.Argument(help="on, off, cycle, reset or status")],
        words: TargetArgs = None,
        dry_run: DryRunOpt = False,
        api: ApiOpt = None,
        data_dir: DataOpt = None,
        as_json: JsonOpt = False,
    ) -> None:
        """Power the nodes a target selects through their BMCs: {uuid: {"power"} | {"error"}};
        exit 1 if any failed. Whole uuids are used as given (a node known only by its BMC)."""
        from hwfleet.cli.targets import resolve, show_selection, target_expr, whole_uuids

        if action not in ("on", "off", "cycle", "reset", "status"):
            raise CliError(f"power action must be on, off, cycle, reset or status, not {action!r}")
        if not words:  # power has no --all: destructive work names its targets
            raise CliError("give a target: power ACTION TARGET… (docs/cli.md)")
        expr = target_expr(words)
        out: dict[str, dict[str, Any]] = {}
        with ApiClient(api, data_dir, timeout=60) as client:
            if dry_run:
                show_selection(expr, resolve(client, expr), as_json)
                return
            uuids = whole_uuids(words) or [d["uuid"] for d in resolve(client, expr)]
            if not uuids:
                raise CliError(f"{expr!r} selects no devices")
            for uuid in dict.fromkeys(uuids):
                try:
                    reply = client.post(f"/api/v1/nodes/{uuid}/power", json={"action": action})
                    out[uuid] = {"power": reply["power"]}
                except CliError as exc:
                    out[uuid] = {"error": str(exc)}
        if as_json:
            print_json(out)
        else:
            for uuid, r in out.items():
                console().print(f"{uuid}: {r.get('power') or 'error: ' + r['error']}")
        if any("error" in r for r in out.values()):
            raise typer.Exit(1)

    @app.command("sel")
    def sel(
        uuid: TargetArg, api: ApiOpt = None, data_dir: DataOpt = None, as_json: JsonOpt = False
    ) -> None:
        """A node's system event log, read from its BMC now."""
        with ApiClient(api, data_dir, timeout=60) as client:
            uuid = resolve_one(client, uuid)
            rows = client.get(f"/api/v1/nodes/{uuid}/sel")["sel"]
        if as_json:
            print_json(rows)
            return
        cols = [
            (k, lambda r, k=k: r.get(k, "")) for k in ("id", "timestamp", "severity", "message")
        ]
        print_table(f"{len(rows)} SEL entries", rows, cols)

    @app.command("sensors")
    def sensors(
        uuid: TargetArg, api: ApiOpt = None, data_dir: DataOpt = None, as_json: JsonOpt = False
    ) -> None:
        """A node's sensor readings, read from its BMC now."""
        with ApiClient(api, data_dir, timeout=60) as client:
            uuid = resolve_one(client, uuid)
            rows = client.get(f"/api/v1/nodes/{uuid}/sensors")["sensors"]
        if as_json:
            print_json(rows)
            return
        keys = ("name", "kind", "value", "units", "health", "upper_critical")
        cols = [(k, lambda r, k=k: "" if r.get(k) is None else r[k]) for k in keys]
        print_table(f"{len(rows)} sensors", rows, cols)

    @app.command("pollers")
    def pollers(
        node: Annotated[str | None, typer.Option(help="only this node's pollers")] = None,
        data: Annotated[int | None, typer.Option(help="print this poller's latest data")] = None,
        api: ApiOpt = None,
        data_dir: DataOpt = None,
        as_json: JsonOpt = False,
    ) -> None:
        """BMC pollers: type, interval, failures, last error; --data ID for the latest data."""
        with ApiClient(api, data_dir) as client:
            if data is not None:
                print_json(client.get(f"/api/v1/pollers/{data}/data"))
                return
            rows = client.get("/api/v1/pollers", params={"node": node} if node else {})
        if as_json:
            print_json(rows)
            return
        keys = (
            "id",
            "node",
            "type",
            "interval",
            "paused",
            "failures",
            "last_polled_at",
            "last_error",
        )
        cols = [(k, lambda r, k=k: "" if r.get(k) is None else r[k]) for k in keys]
        print_table(f"{len(rows)} pollers", rows, cols)

    @app.command("firmware")
    def firmware(
        uuid: TargetArg,
        spec: Annotated[Path, typer.Option(help="JSON spec: {bios: {...}, firmware: [...]}")],
        dry_run: Annotated[bool, typer.Option(help="show the plan, change nothing")] = False,
        wait: Annotated[
            bool, typer.Option(help="follow the update task to its end (--no-wait: print it)")
        ] = True,
        api: ApiOpt = None,
        data_dir: DataOpt = None,
        as_json: JsonOpt = False,
    ) -> None:
        """decom.firmware_secure through the node's BMC: firmware versions and BIOS settings.

        The update runs as a task on the controller (`hwfleet tasks` lists it, with its
        percent and ETA); this follows it and prints the report read back from the BMC.
        """
        import json

        from hwfleet.cli.progress import follow_task

        try:
            document = json.loads(spec.read_text())
        except (OSError, ValueError) as exc:
            raise CliError(f"cannot read the spec {spec}: {exc}") from None
        with ApiClient(api, data_dir, timeout=120) as client:
            uuid = resolve_one(client, uuid)
            report = client.post(
                f"/api/v1/nodes/{uuid}/firmware", json={"spec": document, "dry_run": dry_run}
            )
            if "task" in report:
                task = report["task"]
                if wait:
                    task = follow_task(client, task["id"], 24 * 3600.0, quiet=as_json)
                if not wait or task["state"] != "complete":
                    if as_json:
                        print_json(task)
                    if task["state"] in ("error", "lost"):
                        raise CliError(f"firmware task {task['id']} failed: {task.get('msg')}")
                    if not as_json:
                        console().print(f"firmware task {task['id']}: {task['state']}")
                    return
                report = {**task["result"], "task": task["id"]}
        if as_json:
            print_json(report)
            return
        out = console()
        if dry_run:
            for s in report["plan"]["firmware"]:
                out.print(f"would update {s['component']}: {s['from']} -> {s['to']}")
            for s in report["plan"]["bios"]:
                out.print(f"would set BIOS {s['attribute']}: {s['from']} -> {s['to']}")
        for c in report["changed"]:
            out.print(f"changed {c.get('firmware') or c.get('bios')}: {c['from']} -> {c['to']}")
        for m in report["matched"]:
            out.print(f"already matched {m.get('firmware') or m.get('bios')}")
