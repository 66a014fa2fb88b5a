"""``hwfleet bmc``, ``power``, ``sel``, ``sensors``, ``pollers``: out-of-band management.

Nodes are targets (docs/cli.md): ``power`` acts on every device a target selects
(``hwfleet power cycle 'G@rack1 and state=offline'``, ``--dry-run`` lists them); the
one-node commands take a target that selects exactly one device. A whole uuid is used
as given, so a BMC can be set for a node before its agent ever enrolls.

The BMC password is never a command-line argument (other users see those in ``ps``):
it comes from ``--password-file``, ``HWFLEET_BMC_PASSWORD`` or a hidden prompt.
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


def _password(password_file: Path | None) -> str:
    if password_file is not None:
        try:
            return password_file.read_text().rstrip("\n")
        except OSError as exc:
            raise CliError(f"cannot read {password_file}: {exc.strerror}") from None
    if PASSWORD_ENV in os.environ:
        return os.environ[PASSWORD_ENV]
    if sys.stdin.isatty():
        return str(typer.prompt("BMC password", hide_input=True, default="", show_default=False))
    return ""


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
        api: ApiOpt = None,
        data_dir: DataOpt = None,
        as_json: JsonOpt = False,
    ) -> None:
        """Set a node's BMC; the credentials are stored encrypted and never shown."""
        driver, address = _address(redfish, ipmi, snmp)
        body = {
            "driver": driver,
            "address": address,
            "username": username,
            "password": _password(password_file),
            "port": port,
            "verify_tls": not insecure,
            "system": system,
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
        api: ApiOpt = None,
        data_dir: DataOpt = None,
        as_json: JsonOpt = False,
    ) -> None:
        """decom.firmware_secure through the node's BMC: firmware versions and BIOS settings."""
        import json

        try:
            document = json.loads(spec.read_text())
        except (OSError, ValueError) as exc:
            raise CliError(f"cannot read the spec {spec}: {exc}") from None
        with ApiClient(api, data_dir, timeout=3600) as client:
            uuid = resolve_one(client, uuid)
            report = client.post(
                f"/api/v1/nodes/{uuid}/firmware", json={"spec": document, "dry_run": dry_run}
            )
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
