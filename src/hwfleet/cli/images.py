"""``hwfleet images``: the controller's image registry (DESIGN §12).

``add FILE`` streams the file to the controller with a progress bar (never
reading it whole), and prints ``{"id", "name", "sha256", "blake3", "size", "format", …}``
with ``--json``; ``list``, ``show`` and ``delete`` take the image id.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

import typer

from hwfleet.cli.client import ApiClient, CliError
from hwfleet.cli.fleet import ApiOpt, DataOpt, JsonOpt
from hwfleet.cli.output import console, err_console, print_json

Opt = typer.Option
IdArg = Annotated[str, typer.Argument(help="image id from `hwfleet images list`")]
CHUNK = 1024 * 1024


def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{n} B"
        n /= 1024  # type: ignore[assignment]
    return str(n)


def _show(row: dict[str, Any], as_json: bool, verb: str = "") -> None:
    if as_json:
        print_json(row)
        return
    source = row["source_format"]
    converted = f" (converted from {source})" if source != row["format"] else ""
    console().print(
        f"{verb}image [bold]{row['id']}[/bold] {row['name']!r}: {row['format']}{converted}, "
        f"{_size(row['size'])}, disk {_size(row['disk_size'])}\n  sha256 {row['sha256']}"
        + (f"\n  blake3 {row['blake3']}" if row.get("blake3") else ""),
        highlight=False,
        markup=True,
    )


def _chunks(path: Path, size: int, quiet: bool) -> Iterator[bytes]:
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    columns = (BarColumn(), DownloadColumn(), TransferSpeedColumn(), TimeRemainingColumn())
    with (
        open(path, "rb") as image,
        Progress(*columns, console=err_console(), disable=quiet, transient=True) as progress,
    ):
        task = progress.add_task("upload", total=size)
        while block := image.read(CHUNK):
            yield block
            progress.advance(task, len(block))


def register(app: typer.Typer) -> None:
    images = typer.Typer(help="Disk images: add (upload), list, show, delete.")
    app.add_typer(images, name="images")

    @images.command("add")
    def add(
        file: Annotated[Path, typer.Argument(help="raw, raw.gz, raw.zst or qcow2 image")],
        name: Annotated[str | None, Opt("--name", help="default: the file's name")] = None,
        api: ApiOpt = None,
        data_dir: DataOpt = None,
        as_json: JsonOpt = False,
    ) -> None:
        """Upload an image; the controller records its sha256, size and format."""
        try:
            size = os.stat(file).st_size
        except OSError as exc:
            raise CliError(f"cannot read {file}: {exc.strerror}") from None
        # Uploads take as long as they take; only connecting is bounded.
        with ApiClient(api, data_dir, timeout=6 * 3600.0) as client:
            row = client.post(
                "/api/v1/images",
                params={"name": name or file.name},
                content=_chunks(file, size, as_json),
                headers={"Content-Type": "application/octet-stream"},
            )
        _show(row, as_json, "added ")

    @images.command("list")
    def list_(api: ApiOpt = None, data_dir: DataOpt = None, as_json: JsonOpt = False) -> None:
        """Every image in the registry."""
        with ApiClient(api, data_dir) as client:
            rows: list[dict[str, Any]] = client.get("/api/v1/images")
        if as_json:
            print_json(rows)
            return
        from rich.table import Table

        table = Table(title=f"{len(rows)} images", header_style="bold")
        for column in ("id", "name", "format", "size", "disk", "sha256"):
            table.add_column(column, no_wrap=column != "name", overflow="fold")
        for row in rows:
            table.add_row(
                row["id"],
                row["name"],
                row["format"],
                _size(row["size"]),
                _size(row["disk_size"]),
                row["sha256"][:16] + "…",
            )
        console().print(table)

    @images.command("show")
    def show(
        image_id: IdArg, api: ApiOpt = None, data_dir: DataOpt = None, as_json: JsonOpt = False
    ) -> None:
        """One image: format, sizes and sha256."""
        with ApiClient(api, data_dir) as client:
            row = client.get(f"/api/v1/images/{quote(image_id, safe='')}")
        _show(row, as_json)

    @images.command("delete")
    def delete(
        image_id: IdArg, api: ApiOpt = None, data_dir: DataOpt = None, as_json: JsonOpt = False
    ) -> None:
        """Remove an image from the registry and the disk."""
        with ApiClient(api, data_dir) as client:
            row = client.delete(f"/api/v1/images/{quote(image_id, safe='')}")
        _show(row, as_json, "deleted ")
