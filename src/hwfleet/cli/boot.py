"""``hwfleet boot``: the boot services of a running controller (DHCP through Kea, TFTP, HTTP).

``status`` shows Kea (alive, pid, restarts), the range and the TFTP/HTTP addresses;
``leases`` Kea's lease table with hwfleet's pins (``--json``: one document);
``pin MAC IP`` reserves an address for a MAC (refused when another MAC holds or pins it);
``build-discovery`` builds the discovery kernel and initramfs (no controller needed).
They use the controller's REST API with the operator token (``--api``/``HWFLEET_API``,
``HWFLEET_TOKEN`` or ``--data-dir``).
"""

from __future__ import annotations

from typing import Any

import typer

from hwfleet.cli.client import ApiClient
from hwfleet.cli.fleet import ApiOpt, DataOpt, JsonOpt
from hwfleet.cli.output import console, print_json, table


def register(app: typer.Typer) -> None:
    boot = typer.Typer(help="Boot services: DHCP (Kea), TFTP and HTTP boot.", no_args_is_help=True)
    app.add_typer(boot, name="boot")

    @boot.command("status")
    def status(api: ApiOpt = None, data_dir: DataOpt = None, as_json: JsonOpt = False) -> None:
        """Kea, the DHCP range, TFTP and HTTP boot of the controller."""
        with ApiClient(api, data_dir) as client:
            doc = client.get("/api/v1/boot/status")
        if as_json:
            print_json(doc)
            return
        kea, proxy = doc.get("kea"), doc.get("proxy")
        rows: list[list[Any]] = [
            ["interface", doc["interface"]],
            ["server address", doc["server_ip"]],
            ["DHCP range", f"{doc['range']} (subnet {doc['subnet']})"],
        ]
        if kea is not None:
            state = "alive" if kea["alive"] else "NOT ANSWERING"
            rows.append(["Kea", f"{state}, pid {kea['pid']}, restarts {kea['restarts']}"
                         + (", attached" if kea["attached"] else "")])  # fmt: skip
        if proxy is not None:
            rows.append(["proxyDHCP", f"boot files only, {proxy['answered']} answers"])
        rows += [
            ["TFTP", doc["tftp"] or "off"],
            ["HTTP boot", doc["http_base"] + "/boot/ipxe"],
            ["binds seen", doc["binds"]],
        ]  # fmt: skip
        console().print(table("boot services", ["", ""], rows))

    @boot.command("leases")
    def leases(api: ApiOpt = None, data_dir: DataOpt = None, as_json: JsonOpt = False) -> None:
        """Kea's leases (and hwfleet's pins)."""
        with ApiClient(api, data_dir) as client:
            doc = client.get("/api/v1/boot/leases")
        if as_json:
            print_json(doc)
            return
        rows = [
            [
                x["mac"],
                x["ip"],
                x["state"],
                x["expires"],
                "yes" if x["pinned"] else "",
                x["hostname"],
            ]
            for x in doc["leases"]
        ]
        console().print(table("leases", ["mac", "ip", "state", "expires", "pinned", "host"], rows))
        leased = {x["mac"] for x in doc["leases"]}
        idle = [[p["mac"], p["ip"]] for p in doc["pins"] if p["mac"] not in leased]
        if idle:
            console().print(table("pins without a lease", ["mac", "ip"], idle))

    @boot.command("pin")
    def pin(
        mac: str = typer.Argument(help="the machine's MAC address"),
        ip: str = typer.Argument(help="the IPv4 address it always gets"),
        api: ApiOpt = None,
        data_dir: DataOpt = None,
        as_json: JsonOpt = False,
    ) -> None:
        """Reserve IP for MAC (Kea hands it out from the next request on)."""
        with ApiClient(api, data_dir) as client:
            doc = client.post("/api/v1/boot/pins", json={"mac": mac, "ip": ip})
        if as_json:
            print_json(doc)
        else:
            typer.echo(f"pinned {doc['mac']} to {doc['ip']}")

    @boot.command("build-discovery")
    def build_discovery(
        out: str | None = typer.Option(
            None, help="output directory (default: <data dir>/boot/files/discovery)"
        ),
        data_dir: DataOpt = None,
        as_json: JsonOpt = False,
    ) -> None:
        """Build the discovery kernel and initramfs (Debian packages + the hwfleet agent)."""
        from pathlib import Path

        from hwfleet.boot.discovery_image import BuildError, build_discovery
        from hwfleet.cli.client import CliError
        from hwfleet.settings import default_data_dir

        target = Path(out or Path(data_dir or default_data_dir()) / "boot/files/discovery")
        try:
            doc = build_discovery(target)
        except BuildError as exc:
            raise CliError(f"build-discovery: {exc}") from None
        if as_json:
            print_json(doc)
        else:
            typer.echo(f"{doc['vmlinuz']}\n{doc['initrd']} ({doc['initrd_bytes']} bytes)")
