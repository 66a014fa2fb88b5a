"""Target expressions on the command line: ``hwfleet targets``, ``hwfleet groups``, helpers.

Every device-acting command resolves its target through the controller
(``GET /api/v1/targets``), so the CLI and every other client share one rule.
"""

from __future__ import annotations

import re
from typing import Annotated, Any
from urllib.parse import quote

import typer

from hwfleet.cli import completion
from hwfleet.cli.client import ApiClient, CliError
from hwfleet.cli.options import ApiOpt, DataOpt, JsonOpt
from hwfleet.cli.output import console, plain, print_json, print_table

KEYWORDS = {"and", "or", "not", "(", ")"}
#: A whole uuid is used as given (no lookup): scripts keep the answers they had for
#: unknown uuids ("no such device") before targets existed.
FULL_UUID = re.compile(r"^[0-9a-fA-F]{8}(-[0-9a-fA-F]{4}){3}-[0-9a-fA-F]{12}$")
TargetArgs = Annotated[
    list[str] | None,
    typer.Argument(
        help="target: uuid or prefix, name/serial glob, a,b,c, field=value, field<N, "
        "G@group, and/or/not (docs/cli.md)",
        metavar="TARGET...",
        autocompletion=completion.targets,
    ),
]
TargetArg = Annotated[
    str,
    typer.Argument(
        help="target expression (quote it): uuid, prefix, name, glob, G@group… (docs/cli.md)",
        autocompletion=completion.targets,
    ),
]
AllOpt = Annotated[bool, typer.Option("--all", help="every device")]
DryRunOpt = Annotated[bool, typer.Option("--dry-run", help="list the selected devices; do nothing")]


def target_expr(words: list[str] | None, every: bool = False) -> str:
    """One expression from the arguments: ``--all``, or the words (a list when they are bare
    targets, ``ping A B``; joined as they are when they use operators)."""
    words = [w for w in words or [] if w.strip()]
    if every == bool(words):
        raise CliError("give a target (see docs/cli.md) or --all, not both and not neither")
    if every:
        return "*"
    if len(words) > 1 and not any(w.lower() in KEYWORDS or "(" in w or ")" in w for w in words):
        return ",".join(words)
    return " ".join(words)


def resolve(client: ApiClient, expr: str) -> list[dict[str, Any]]:
    """The devices ``expr`` selects (the controller evaluates it)."""
    try:
        reply = client.get("/api/v1/targets", params={"expr": expr})
    except CliError as exc:
        # The controller's 422 names the fault and points at it: show just that.
        raise CliError(f"target: {str(exc).partition(': 422: ')[2] or exc}") from None
    devices: list[dict[str, Any]] = reply["devices"]
    return devices


def whole_uuids(words: list[str] | None) -> list[str] | None:
    """The words, when every one is a whole uuid (used as given); else None."""
    if words and all(FULL_UUID.match(w) for w in words):
        return list(words)
    return None


def resolve_one(client: ApiClient, expr: str) -> str:
    """The uuid of the one device ``expr`` selects; an error names how many it did."""
    if FULL_UUID.match(expr):
        return expr
    devices = resolve(client, expr)
    if len(devices) != 1:
        names = ", ".join(d["name"] or d["uuid"] for d in devices[:5])
        more = "…" if len(devices) > 5 else ""
        raise CliError(
            f"{expr!r} selects {len(devices)} devices ({names}{more}); this command acts on "
            "one: give its uuid, a unique prefix or its name"
        )
    uuid: str = devices[0]["uuid"]
    return uuid


def show_selection(
    expr: str, devices: list[dict[str, Any]], as_json: bool, note: str = " (dry run: nothing done)"
) -> None:
    """What ``--dry-run`` prints: the devices, nothing done."""
    if as_json:
        print_json({"expr": expr, "count": len(devices), "devices": devices})
        return
    print_table(
        f"{expr}: {len(devices)} devices{note}",
        devices,
        [
            ("uuid", lambda r: r.get("short") or r["uuid"]),
            ("name", lambda r: r["name"]),
            ("serial", lambda r: r["serial"]),
            ("model", lambda r: r["model_id"]),
            ("state", lambda r: r["state"]),
            ("st_id", lambda r: r["st_id"]),
        ],
    )


def register(app: typer.Typer) -> None:
    @app.command("targets")
    def targets(
        words: TargetArgs = None,
        every: AllOpt = False,
        api: ApiOpt = None,
        data_dir: DataOpt = None,
        as_json: JsonOpt = False,
    ) -> None:
        """List the devices a target expression selects (what --dry-run shows)."""
        expr = target_expr(words, every)
        with ApiClient(api, data_dir) as client:
            show_selection(expr, resolve(client, expr), as_json, note="")

    groups = typer.Typer(help="Named targets: G@NAME selects a group's devices.")
    app.add_typer(groups, name="groups")

    @groups.command("add")
    def add(
        name: Annotated[str, typer.Argument(help="the group's name (G@NAME)")],
        expr: Annotated[
            str | None, typer.Argument(help="a target expression, resolved at each use")
        ] = None,
        member: Annotated[
            list[str] | None,
            typer.Option("--member", help="a static member (uuid, prefix, name; repeat)"),
        ] = None,
        api: ApiOpt = None,
        data_dir: DataOpt = None,
        as_json: JsonOpt = False,
    ) -> None:
        """Create or replace a group: an expression ('name=rack1-*') or --member devices."""
        body: dict[str, Any] = {"expr": expr} if expr is not None else {}
        if member:
            body["members"] = member
        if len(body) != 1:
            raise CliError("give the group an expression or --member devices, exactly one")
        with ApiClient(api, data_dir) as client:
            reply = client.request("PUT", f"/api/v1/groups/{quote(name, safe='')}", json=body)
        if as_json:
            print_json(reply)
            return
        what = reply["expr"] if reply["kind"] == "expr" else f"{len(reply['members'])} members"
        console().print(plain(f"group {name}: {what}"))

    @groups.command("list")
    def list_(api: ApiOpt = None, data_dir: DataOpt = None, as_json: JsonOpt = False) -> None:
        """Every group."""
        with ApiClient(api, data_dir) as client:
            rows = client.get("/api/v1/groups")
        if as_json:
            print_json(rows)
            return
        print_table(
            f"{len(rows)} groups",
            rows,
            [
                ("name", lambda r: r["name"]),
                ("kind", lambda r: r["kind"]),
                ("expression / members", lambda r: r["expr"] or ", ".join(r["members"])),
            ],
        )

    @groups.command("show")
    def show(
        name: Annotated[str, typer.Argument(help="the group")],
        api: ApiOpt = None,
        data_dir: DataOpt = None,
        as_json: JsonOpt = False,
    ) -> None:
        """A group and the devices it selects now."""
        with ApiClient(api, data_dir) as client:
            reply = client.get(f"/api/v1/groups/{quote(name, safe='')}")
        if as_json:
            print_json(reply)
            return
        show_selection(f"G@{name}", reply["devices"], False, note="")

    @groups.command("remove")
    def remove(
        name: Annotated[str, typer.Argument(help="the group")],
        api: ApiOpt = None,
        data_dir: DataOpt = None,
    ) -> None:
        """Delete a group (its devices are untouched)."""
        with ApiClient(api, data_dir) as client:
            client.delete(f"/api/v1/groups/{quote(name, safe='')}")
        console().print(plain(f"group {name} removed"))
