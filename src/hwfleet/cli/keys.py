"""``hwfleet keys``: agent keys and enrollment tokens, through the controller's REST API.

``list`` shows every key with its fingerprint and state; ``accept``,
``reject`` and ``delete`` take the short key id (or the full fingerprint);
``token`` creates a single-use enrollment token, printed once.
"""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import quote

import typer

from hwfleet.cli.client import ApiClient
from hwfleet.cli.fleet import ApiOpt, DataOpt, JsonOpt
from hwfleet.cli.output import Part, console, err_console, line, plain, print_json, styled
from hwfleet.cli.params import POSITIVE_DURATION

Opt = typer.Option
KeyArg = Annotated[str, typer.Argument(help="key id from `hwfleet keys list` (or fingerprint)")]

STATE_STYLE = {"accepted": "green", "pending": "yellow", "rejected": "red", "denied": "red"}


def _show(row: dict[str, Any], as_json: bool, verb: str) -> None:
    if as_json:
        print_json(row)
        return
    state = (row["state"], STATE_STYLE.get(row["state"], "white"))
    outcome: list[Part] = ["deleted (was ", state, ")"] if verb == "deleted" else [state]
    console().print(
        line(
            "key ",
            (row["id"], "bold"),
            f" of device {row['device_uuid']}: ",
            *outcome,
            f"\n  fingerprint {row['fingerprint']}",
        )
    )


def _table(rows: list[dict[str, Any]]) -> None:
    from rich.table import Table

    # Ids and states never wrap (operators copy the id); a long fingerprint folds.
    table = Table(title=f"{len(rows)} keys", header_style="bold")
    table.add_column("id", no_wrap=True)
    table.add_column("device", overflow="fold")
    table.add_column("state", no_wrap=True)
    table.add_column("source", no_wrap=True)
    table.add_column("fingerprint", overflow="fold")
    for row in rows:
        table.add_row(
            plain(row["id"]),
            plain(row["device_uuid"]),
            styled(row["state"], STATE_STYLE.get(row["state"], "white")),
            plain(row["source"]),
            plain(row["fingerprint"]),
        )
    console().print(table)


def register(app: typer.Typer) -> None:
    keys = typer.Typer(help="Agent keys: list, accept, reject, delete; enrollment tokens.")
    app.add_typer(keys, name="keys")

    @keys.command("list")
    def list_(api: ApiOpt = None, data_dir: DataOpt = None, as_json: JsonOpt = False) -> None:
        """Every agent key with its fingerprint and state."""
        with ApiClient(api, data_dir) as client:
            rows: list[dict[str, Any]] = client.get("/api/v1/keys")
        if as_json:
            print_json(rows)
            return
        _table(rows)

    @keys.command("accept")
    def accept(
        key_id: KeyArg, api: ApiOpt = None, data_dir: DataOpt = None, as_json: JsonOpt = False
    ) -> None:
        """Accept a pending (or denied/rejected) key: the controller signs its certificate."""
        with ApiClient(api, data_dir) as client:
            row = client.post(f"/api/v1/keys/{quote(key_id, safe='')}/accept")
        _show(row, as_json, "accepted")

    @keys.command("reject")
    def reject(
        key_id: KeyArg, api: ApiOpt = None, data_dir: DataOpt = None, as_json: JsonOpt = False
    ) -> None:
        """Reject a key; a device connected with it is dropped at once."""
        with ApiClient(api, data_dir) as client:
            row = client.post(f"/api/v1/keys/{quote(key_id, safe='')}/reject")
        _show(row, as_json, "rejected")

    @keys.command("delete")
    def delete(
        key_id: KeyArg, api: ApiOpt = None, data_dir: DataOpt = None, as_json: JsonOpt = False
    ) -> None:
        """Delete a key; the device must enroll again (password or token) to return."""
        with ApiClient(api, data_dir) as client:
            row = client.delete(f"/api/v1/keys/{quote(key_id, safe='')}")
        _show(row, as_json, "deleted")

    @keys.command("token")
    def token(
        ttl: Annotated[
            float,
            Opt(
                "--ttl",
                parser=POSITIVE_DURATION,
                metavar="DURATION",
                help="how long the token stays valid",
            ),
        ] = 3600.0,
        api: ApiOpt = None,
        data_dir: DataOpt = None,
        as_json: JsonOpt = False,
    ) -> None:
        """Create a single-use enrollment token (shown once; give it to one agent)."""
        with ApiClient(api, data_dir) as client:
            reply = client.post("/api/v1/keys/tokens", json={"ttl": ttl})
        if as_json:
            print_json(reply)
            return
        # The token alone on stdout (TOKEN=$(hwfleet keys token) works); the note on stderr.
        typer.echo(reply["token"])
        err_console().print(styled(f"single use, valid until {reply['expires_at']}", "dim"))
