"""``hwfleet device``: manage one device (seed 004) through the controller's REST API.

``rename``, ``passwd``, ``network`` (no setting flags: show), ``wifi``,
``trust list|add|remove`` (``show``, ``remove`` and ``maintenance`` over many devices:
:mod:`hwfleet.cli.device_life`). Passwords come from ``--old/--new``, then from
``HWFLEET_DEVICE_OLD_PASSWORD`` / ``HWFLEET_DEVICE_NEW_PASSWORD``, then from a
hidden prompt on the terminal; the Wi-Fi key from ``--psk``, then
``HWFLEET_WIFI_PSK``, then a hidden prompt. Flags put a secret where ``ps``
can see it: prefer the environment or the prompt. No secret is ever printed.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

import typer

from hwfleet.cli import completion
from hwfleet.cli.client import ApiClient, CliError
from hwfleet.cli.fleet import ApiOpt, DataOpt, JsonOpt
from hwfleet.cli.output import console, line, plain, print_json, print_table
from hwfleet.cli.targets import resolve_one

Opt = typer.Option
Arg = typer.Argument
UuidArg = Annotated[
    str,
    Arg(
        help="the device: uuid, unique uuid prefix, name or serial (a target naming one)",
        autocompletion=completion.targets,
    ),
]
IfaceOpt = Annotated[str | None, Opt("--interface", help="network interface on the device")]
#: Applying network settings can take NetworkManager's 30 s and a DHCP lease.
NETWORK_HTTP_TIMEOUT = 120.0
PSK_SECURITY = ("wpa-psk", "wpa2-psk")


def _base(uuid: str) -> str:
    return f"/api/v1/devices/{quote(uuid, safe='')}"


def _secret(given: str | None, prompt: str, *, confirm: bool = False, empty: bool = False) -> str:
    """A secret from a flag or env (``given``), else a hidden prompt; never echoed."""
    if given is not None:
        return given
    if not sys.stdin.isatty():
        raise CliError(f"{prompt}: not given and no terminal to ask on (use the flag or env var)")
    value: str = typer.prompt(
        prompt,
        hide_input=True,
        confirmation_prompt=confirm,
        default="" if empty else None,
        show_default=False,
        err=True,  # stdout stays for the result (one JSON document with --json)
    )
    return value


def _show_pairs(title: str, doc: dict[str, Any]) -> None:
    rows = [
        {"field": k, "value": ", ".join(map(str, v)) if isinstance(v, list) else v}
        for k, v in doc.items()
    ]
    print_table(title, rows, [("field", lambda r: r["field"]), ("value", lambda r: r["value"])])


def network_body(
    *,
    dhcp: bool,
    static: bool,
    interface: str | None,
    ipaddr: str | None,
    mask: str | None,
    route: str | None,
    ns: list[str] | None,
    wifi_mode: str | None,
    ssid: str | None,
    security: str | None,
    psk: str | None,
) -> dict[str, Any]:
    """The PUT body from the flags; empty (apart from interface) means "show, don't set"."""
    if dhcp and static:
        raise CliError("give --dhcp or --static, not both")
    body: dict[str, Any] = {}
    if dhcp or static:
        body["method"] = "dhcp" if dhcp else "static"
    servers = [s.strip() for item in ns or [] for s in item.split(",") if s.strip()]
    for key, value in (
        ("ipaddr", ipaddr),
        ("mask", mask),
        ("route", route),
        ("ns", servers or None),
        ("wifi_mode", wifi_mode),
        ("ssid", ssid),
        ("security", security),
    ):
        if value is not None:
            body[key] = value
    wants_key = security is None or security.lower() in PSK_SECURITY
    if ssid is not None and wants_key and psk is None and sys.stdin.isatty():
        hint = " (empty for an open network)" if security is None else ""
        psk = _secret(None, f"Wi-Fi key for {ssid}{hint}", empty=security is None) or None
    if psk is not None and ssid is not None:
        # Only with --ssid: a HWFLEET_WIFI_PSK left in the environment must not make a show a set.
        body["psk"] = psk
    if body and interface is not None:
        body["interface"] = interface
    return body


def register(app: typer.Typer) -> None:
    from hwfleet.cli import device_direct, device_life

    device = typer.Typer(help="Manage one device: name, password, network, Wi-Fi, trusted keys.")
    app.add_typer(device, name="device")
    device_direct.register(device)
    device_life.register(device)

    @device.command("rename")
    def rename(
        uuid: UuidArg,
        name: Annotated[str, Arg(help="the new name")],
        api: ApiOpt = None,
        data_dir: DataOpt = None,
        as_json: JsonOpt = False,
    ) -> None:
        """Rename a device; it keeps the name across restarts."""
        with ApiClient(api, data_dir) as client:
            uuid = resolve_one(client, uuid)
            reply = client.post(f"{_base(uuid)}/rename", json={"name": name})
        if as_json:
            print_json(reply)
            return
        console().print(
            line(f"device {uuid}: renamed {reply['old_name']!r} → ", (reply["name"], "bold"))
        )

    @device.command("passwd")
    def passwd(
        uuid: UuidArg,
        old: Annotated[
            str | None, Opt("--old", envvar="HWFLEET_DEVICE_OLD_PASSWORD", show_envvar=True)
        ] = None,
        new: Annotated[
            str | None, Opt("--new", envvar="HWFLEET_DEVICE_NEW_PASSWORD", show_envvar=True)
        ] = None,
        reset_acl: Annotated[
            bool,
            Opt("--reset-acl/--keep-acl", help="drop every other trusted controller key"),
        ] = True,
        api: ApiOpt = None,
        data_dir: DataOpt = None,
        as_json: JsonOpt = False,
    ) -> None:
        """Change the device's admin password (asks without echo when not given)."""
        if old is None:
            # click ignores an empty variable, but "" is a real old password: no password yet.
            old = os.environ.get("HWFLEET_DEVICE_OLD_PASSWORD")
        body = {
            "old_password": _secret(old, "Current device password (empty if none)", empty=True),
            "new_password": _secret(new, "New device password", confirm=True),
            "reset_acl": reset_acl,
        }
        with ApiClient(api, data_dir) as client:
            uuid = resolve_one(client, uuid)
            reply = client.post(f"{_base(uuid)}/password", json=body)
        if as_json:
            print_json(reply)
            return
        dropped = f"; {reply['trust_removed']} other trusted keys removed" if reset_acl else ""
        console().print(plain(f"device {uuid}: password changed{dropped}"))

    @device.command("network")
    def network(
        uuid: UuidArg,
        dhcp: Annotated[bool, Opt("--dhcp", help="address by DHCP")] = False,
        static: Annotated[bool, Opt("--static", help="static address (with --ipaddr …)")] = False,
        interface: IfaceOpt = None,
        ipaddr: Annotated[str | None, Opt("--ipaddr", help="static IPv4 address")] = None,
        mask: Annotated[str | None, Opt("--mask", help="prefix (24) or 255.255.255.0")] = None,
        route: Annotated[str | None, Opt("--route", help="default gateway")] = None,
        ns: Annotated[list[str] | None, Opt("--ns", help="name server (repeat or a,b)")] = None,
        wifi_mode: Annotated[str | None, Opt("--wifi-mode", help="client or host")] = None,
        ssid: Annotated[str | None, Opt("--ssid")] = None,
        security: Annotated[
            str | None, Opt("--security", help="None, WEP, WPA-PSK or WPA2-PSK")
        ] = None,
        psk: Annotated[
            str | None, Opt("--psk", envvar="HWFLEET_WIFI_PSK", help="Wi-Fi key (prefer the env)")
        ] = None,
        api: ApiOpt = None,
        data_dir: DataOpt = None,
        as_json: JsonOpt = False,
    ) -> None:
        """Show the network settings, or change them when any setting flag is given."""
        body = network_body(
            dhcp=dhcp,
            static=static,
            interface=interface,
            ipaddr=ipaddr,
            mask=mask,
            route=route,
            ns=ns,
            wifi_mode=wifi_mode,
            ssid=ssid,
            security=security,
            psk=psk,
        )
        with ApiClient(api, data_dir, timeout=NETWORK_HTTP_TIMEOUT) as client:
            uuid = resolve_one(client, uuid)
            if body:
                reply = client.request("PUT", f"{_base(uuid)}/network", json=body)
            else:
                query = {"interface": interface} if interface else None
                reply = client.get(f"{_base(uuid)}/network", params=query)
        if as_json:
            print_json(reply)
            return
        simulated = " (simulated: recorded, not applied)" if reply.get("simulated") else ""
        _show_pairs(f"device {uuid} network{simulated}", reply.get("network", {}))
        for warning in reply.get("warnings", []):
            console().print(line(("warning:", "yellow"), f" {warning}"))

    @device.command("wifi")
    def wifi(
        uuid: UuidArg,
        interface: IfaceOpt = None,
        api: ApiOpt = None,
        data_dir: DataOpt = None,
        as_json: JsonOpt = False,
    ) -> None:
        """Wi-Fi networks the device can see."""
        query = {"interface": interface} if interface else None
        with ApiClient(api, data_dir, timeout=NETWORK_HTTP_TIMEOUT) as client:
            uuid = resolve_one(client, uuid)
            reply = client.get(f"{_base(uuid)}/wifi", params=query)
        if as_json:
            print_json(reply)
            return
        print_table(
            f"{len(reply['wifi'])} Wi-Fi networks",
            reply["wifi"],
            [
                ("ssid", lambda r: r["ssid"] or "(hidden)"),
                ("signal", lambda r: r["signal"]),
                ("security", lambda r: r["security"] or "open"),
            ],
        )

    @device.command("trust")
    def trust(
        uuid: UuidArg,
        action: Annotated[str, Arg(help="list, add or remove")],
        key: Annotated[
            str | None, Arg(help="fingerprint, or a PEM file (add); fingerprint (remove)")
        ] = None,
        label: Annotated[str, Opt("--label", help="a name for humans (add)")] = "",
        api: ApiOpt = None,
        data_dir: DataOpt = None,
        as_json: JsonOpt = False,
    ) -> None:
        """The controller keys the device obeys: list, add KEY, remove KEY."""
        if action not in ("list", "add", "remove"):
            raise CliError(f"trust: {action!r} is not list, add or remove")
        if action != "list" and not key:
            raise CliError(f"trust {action}: give the key (a fingerprint or a PEM file)")
        with ApiClient(api, data_dir) as client:
            uuid = resolve_one(client, uuid)
            if action == "list":
                reply = client.get(f"{_base(uuid)}/trust")
            elif action == "add":
                assert key is not None
                reply = client.post(f"{_base(uuid)}/trust", json=trust_body(key, label))
            else:
                assert key is not None
                reply = client.delete(f"{_base(uuid)}/trust/{quote(key, safe='')}")
        if as_json:
            print_json(reply)
            return
        if action == "list":
            print_table(
                f"{len(reply['trust'])} trusted controller keys",
                reply["trust"],
                [
                    ("access id", lambda r: r["access_id"]),
                    ("label", lambda r: r["label"]),
                    ("this controller", lambda r: "yes" if r["current"] else ""),
                    ("added", lambda r: r["added_at"]),
                ],
            )
        else:
            verb = "trusted" if action == "add" else "removed"
            console().print(plain(f"device {uuid}: {verb} {reply['access_id']}"))


def trust_body(key: str, label: str) -> dict[str, Any]:
    """A PEM file or PEM text is sent as ``pem``; anything else as a ``fingerprint``."""
    body: dict[str, Any] = {"label": label}
    path = Path(key)
    if "-----BEGIN" in key:
        body["pem"] = key
    elif path.is_file():
        body["pem"] = path.read_text(encoding="ascii", errors="replace")
    else:
        body["fingerprint"] = key
    return body
