"""``hwfleet device show TARGET``, ``device remove TARGET`` and ``device maintenance on|off
TARGET``: one device's record (with its latest inventory), retiring devices from the fleet,
and taking devices out of service (over many devices, batch by batch with ``--batch``)."""

from __future__ import annotations

import json
import sys
from typing import Annotated, Any
from urllib.parse import quote

import typer

from hwfleet.cli.client import ApiClient, CliError
from hwfleet.cli.options import ApiOpt, BatchOpt, DataOpt, JsonOpt, KeepGoingOpt
from hwfleet.cli.output import console, plain, print_json, print_table
from hwfleet.cli.targets import DryRunOpt, TargetArg, resolve, resolve_one, show_selection


def _show(device: dict[str, Any]) -> None:
    rows = [
        {"field": k, "value": ", ".join(map(str, v)) if isinstance(v, list) else v}
        for k, v in device.items()
        if k != "inventory"
    ]
    print_table(
        f"device {device['uuid']}",
        rows,
        [("field", lambda r: r["field"]), ("value", lambda r: r["value"])],
    )
    inventory = device.get("inventory")
    if inventory is None:
        console().print(plain("inventory: none recorded yet (hwfleet run DEVICE inventory)"))
    else:
        console().print(plain("inventory:"))
        console().print(plain(json.dumps(inventory, indent=2)))


def register(device: typer.Typer) -> None:
    @device.command("show")
    def show(
        target: TargetArg,
        api: ApiOpt = None,
        data_dir: DataOpt = None,
        as_json: JsonOpt = False,
    ) -> None:
        """One device's record, with its latest inventory."""
        with ApiClient(api, data_dir) as client:
            uuid = resolve_one(client, target)
            reply = client.get(f"/api/v1/devices/{quote(uuid, safe='')}")
        if as_json:
            print_json(reply)
            return
        _show(reply)

    @device.command("remove")
    def remove(
        target: TargetArg,
        yes: Annotated[
            bool, typer.Option("--yes", "-y", help="do not ask for confirmation")
        ] = False,
        dry_run: Annotated[bool, typer.Option("--dry-run", help="list them; remove none")] = False,
        api: ApiOpt = None,
        data_dir: DataOpt = None,
        as_json: JsonOpt = False,
    ) -> None:
        """Retire devices: revoke their keys, drop their sessions, delete their records
        (tasks and events stay as history). Asks first unless --yes."""
        with ApiClient(api, data_dir) as client:
            devices = resolve(client, target)
            if dry_run:
                show_selection(target, devices, as_json)
                return
            if not devices:
                raise CliError(f"{target!r} selects no devices")
            if not yes:
                if not sys.stdin.isatty():
                    raise CliError(
                        f"removing {len(devices)} devices needs confirmation: run it on a "
                        "terminal, or add --yes"
                    )
                show_selection(target, devices, False, note=" to remove")
                typer.confirm(
                    f"Remove these {len(devices)} devices (keys revoked)?", abort=True, err=True
                )
            removed = [
                client.delete(f"/api/v1/devices/{quote(d['uuid'], safe='')}") for d in devices
            ]
        if as_json:
            print_json({"removed": removed})
            return
        for item, dev in zip(removed, devices, strict=True):
            keys = len(item["keys_revoked"])
            console().print(
                plain(f"removed {dev['name'] or dev['uuid']} ({dev['uuid']}): {keys} keys revoked")
            )

    @device.command("maintenance")
    def maintenance(
        state: Annotated[
            str,
            typer.Argument(help="on: out of service (st_id -1); off: back", metavar="on|off"),
        ],
        target: TargetArg,
        batch: BatchOpt = None,
        continue_on_error: KeepGoingOpt = False,
        dry_run: DryRunOpt = False,
        api: ApiOpt = None,
        data_dir: DataOpt = None,
        as_json: JsonOpt = False,
    ) -> None:
        """Put devices in maintenance (they refuse long tasks and scans) or take them out.

        One device named by uuid, prefix or name keeps the one-device output; any other
        target goes device by device with a live table, in batches with --batch.
        """
        from hwfleet.cli.fleet import run_many
        from hwfleet.protocol.methods import DEVICE_MAINTENANCE
        from hwfleet.targeting import TargetError, is_single, parse

        if state not in ("on", "off"):
            raise CliError(
                f"state: {state!r} is not on or off (hwfleet device maintenance on TARGET)"
            )
        try:
            single = is_single(parse(target))
        except TargetError as exc:
            raise CliError(f"target: {exc}") from None
        params = {"on": state == "on"}
        body = {"method": DEVICE_MAINTENANCE, "params": params}
        with ApiClient(api, data_dir) as client:
            if dry_run:
                show_selection(target, resolve(client, target), as_json)
                return
            if not single or batch is not None:
                run_many(
                    client,
                    target,
                    DEVICE_MAINTENANCE,
                    params,
                    follow=True,
                    timeout=60.0,
                    batch=batch,
                    keep_going=continue_on_error,
                    as_json=as_json,
                )
                return
            uuid = resolve_one(client, target)
            result = client.post(f"/api/v1/devices/{quote(uuid, safe='')}/run", json=body)
        if as_json:
            print_json(result["result"])
            return
        st_id = result["result"]["st_id"]
        console().print(plain(f"device {uuid}: maintenance {state} (st_id {st_id})"))
