"""``hwfleet graphs …`` and ``hwfleet skus …``: task graphs and SKUs through the REST API."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from hwfleet.cli.client import ApiClient, CliError
from hwfleet.cli.fleet import ApiOpt, DataOpt, JsonOpt, parse_params
from hwfleet.cli.output import console, print_json, table
from hwfleet.cli.targets import DryRunOpt, TargetArgs

DONE = ("succeeded", "failed", "cancelled")


def _read(path: str) -> Any:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise CliError(f"cannot read {path}: {exc.strerror or exc}") from None
    except ValueError as exc:
        raise CliError(f"{path} is not JSON: {exc}") from None


def _graph_table(graphs: list[dict[str, Any]]) -> Any:
    rows = []
    for g in graphs:
        for i, t in enumerate(g["tasks"]):
            rows.append(
                (
                    g["graphId"][:8] if i == 0 else "",
                    g["name"] if i == 0 else "",
                    (g["target"] or "")[:8] if i == 0 else "",
                    g["status"] if i == 0 else "",
                    t["label"],
                    t["state"],
                    t.get("error", ""),
                )
            )
    columns = ("graph", "name", "node", "status", "task", "state", "error")
    return table(f"{len(graphs)} graphs", columns, rows)


def _option_map(items: list[str]) -> dict[str, Any]:
    """``--option k=v`` sets graph defaults; ``--option label.k=v`` one task's option."""
    options: dict[str, dict[str, Any]] = {}
    for key, value in parse_params(items).items():
        label, _, name = key.rpartition(".")
        options.setdefault(label or "defaults", {})[name] = value
    return options


def _option_expr(node: list[str] | None, all_nodes: bool, sku: str | None) -> str | None:
    """The target expression naming what --node/--all/--sku name (for --dry-run)."""
    if node:
        return ",".join(node)
    if sku:
        return f"sku={sku}"
    return "state=online" if all_nodes else None


def register(app: typer.Typer) -> None:
    graphs = typer.Typer(help="Task graphs (RackHD format): define, run and follow them.")
    skus = typer.Typer(help="SKUs: rules over the inventory catalog.")
    app.add_typer(graphs, name="graphs")
    app.add_typer(skus, name="skus")

    @graphs.command("list")
    def list_(api: ApiOpt = None, data_dir: DataOpt = None, as_json: JsonOpt = False) -> None:
        """The graph library (shipped and defined)."""
        with ApiClient(api, data_dir) as client:
            rows = client.get("/api/v1/graph-library")
        if as_json:
            print_json(rows)
            return
        cells = [(r["injectableName"], r.get("friendlyName", ""), len(r["tasks"])) for r in rows]
        console().print(table(f"{len(rows)} graphs", ("name", "friendly name", "tasks"), cells))

    @graphs.command("show")
    def show(
        name: str, api: ApiOpt = None, data_dir: DataOpt = None, as_json: JsonOpt = False
    ) -> None:
        """One graph definition."""
        with ApiClient(api, data_dir) as client:
            body = client.get(f"/api/v1/graph-library/{name}")
        if as_json:
            print_json(body)
            return
        cells = [
            (t["label"], t.get("taskName") or t.get("taskDefinition", {}).get("injectableName"),
             ", ".join(f"{k}:{v}" for k, v in (t.get("waitOn") or {}).items()))
            for t in body["tasks"]
        ]  # fmt: skip
        console().print(table(body["injectableName"], ("label", "task", "waitOn"), cells))

    @graphs.command("define")
    def define(
        file: str, api: ApiOpt = None, data_dir: DataOpt = None, as_json: JsonOpt = False
    ) -> None:
        """Define (or replace) a graph from a JSON file (a task if it has implementsTask)."""
        body = _read(file)
        path = (
            "/api/v1/graph-tasks"
            if isinstance(body, dict) and "implementsTask" in body
            else "/api/v1/graph-library"
        )
        with ApiClient(api, data_dir) as client:
            result = client.post(path, json=body)
        print_json(result) if as_json else console().print(f"defined {result['injectableName']}")

    @graphs.command("run")
    def run(
        name: str,
        words: TargetArgs = None,
        node: Annotated[
            list[str] | None, typer.Option("--node", help="target node uuid (repeat)")
        ] = None,
        all_nodes: Annotated[bool, typer.Option("--all", help="every online node")] = False,
        sku: Annotated[str | None, typer.Option(help="every node of this SKU")] = None,
        option: Annotated[
            list[str] | None, typer.Option("--option", help="k=v or label.k=v")
        ] = None,
        wait: Annotated[bool, typer.Option(help="wait until every graph ends")] = False,
        dry_run: DryRunOpt = False,
        api: ApiOpt = None,
        data_dir: DataOpt = None,
        as_json: JsonOpt = False,
    ) -> None:
        """Run a graph on the devices a TARGET selects (sku=…, G@group, globs…), or on
        explicit --node uuids, every online node (--all) or a SKU's nodes (--sku)."""
        from hwfleet.cli.targets import resolve, show_selection, target_expr, whole_uuids

        body: dict[str, Any] = {
            "name": name,
            "nodes": node or [],
            "options": _option_map(option or []),
        }
        if all_nodes:
            body["all"] = True
        if sku:
            body["sku"] = sku
        if words and (node or all_nodes or sku):
            raise CliError("give a TARGET or one of --node, --all, --sku, not both")
        expr = target_expr(words) if words else _option_expr(node, all_nodes, sku)
        with ApiClient(api, data_dir, timeout=120.0) as client:
            if dry_run:
                if expr is None:
                    raise CliError("give a TARGET or one of --node, --all, --sku")
                show_selection(expr, resolve(client, expr), as_json)
                return
            if words:
                uuids = whole_uuids(words) or [d["uuid"] for d in resolve(client, expr or "")]
                if not uuids:
                    raise CliError(f"{expr!r} selects no devices")
                body["nodes"] = uuids
            started = client.post("/api/v1/graphs", json=body)["graphs"]
            ids = [g["graphId"] for g in started if "graphId" in g]
            final = (
                [client.get(f"/api/v1/graphs/{i}", params={"wait": 600}) for i in ids]
                if wait
                else []
            )
        if as_json:
            print_json({"graphs": started, **({"finished": final} if wait else {})})
        else:
            for g in started:
                console().print(f"{g['node']}: " + (g.get("graphId") or f"refused: {g['error']}"))
            if final:
                console().print(_graph_table(final))
        if any("error" in g for g in started) or any(g["status"] != "succeeded" for g in final):
            raise typer.Exit(1)

    @graphs.command("status")
    def status_(
        graph_id: Annotated[str | None, typer.Argument()] = None,
        watch: Annotated[bool, typer.Option(help="live view until every graph ends")] = False,
        active: Annotated[bool, typer.Option(help="only graphs still running or paused")] = False,
        api: ApiOpt = None,
        data_dir: DataOpt = None,
        as_json: JsonOpt = False,
    ) -> None:
        """Graphs and their tasks (one graph with ID)."""
        with ApiClient(api, data_dir) as client:

            def fetch() -> list[dict[str, Any]]:
                if graph_id:
                    return [client.get(f"/api/v1/graphs/{graph_id}")]
                return list(client.get("/api/v1/graphs", params={"active": active, "limit": 50}))

            rows = fetch()
            if as_json:
                print_json(rows[0] if graph_id else rows)
                return
            if not watch:
                console().print(_graph_table(rows))
                return
            from rich.live import Live

            with Live(_graph_table(rows), console=console(), refresh_per_second=4) as live:
                while any(g["status"] not in DONE for g in rows):
                    time.sleep(0.5)  # refresh period of a live display
                    rows = fetch()
                    live.update(_graph_table(rows))

    for action in ("cancel", "pause", "resume"):

        def control(
            graph_id: str,
            api: ApiOpt = None,
            data_dir: DataOpt = None,
            as_json: JsonOpt = False,
            action: str = action,
        ) -> None:
            with ApiClient(api, data_dir) as client:
                result = client.post(f"/api/v1/graphs/{graph_id}/{action}")
            print_json(result) if as_json else console().print(
                f"{result['graphId']}: {result['status']}"
            )

        control.__doc__ = f"{action.capitalize()} a whole graph."
        graphs.command(action)(control)

    @skus.command("list")
    def skus_list(api: ApiOpt = None, data_dir: DataOpt = None, as_json: JsonOpt = False) -> None:
        """Defined SKUs."""
        with ApiClient(api, data_dir) as client:
            rows = client.get("/api/v1/skus")
        if as_json:
            print_json(rows)
            return
        cells = [(r["name"], len(r["rules"]), r.get("discoveryGraphName") or "") for r in rows]
        console().print(table(f"{len(rows)} SKUs", ("name", "rules", "discovery graph"), cells))

    @skus.command("define")
    def skus_define(
        file: str, api: ApiOpt = None, data_dir: DataOpt = None, as_json: JsonOpt = False
    ) -> None:
        """Define (or replace) a SKU from a JSON file; every node is re-evaluated."""
        with ApiClient(api, data_dir) as client:
            result = client.post("/api/v1/skus", json=_read(file))
        print_json(result) if as_json else console().print(f"defined SKU {result['name']}")

    @skus.command("show")
    def skus_show(
        name: str, api: ApiOpt = None, data_dir: DataOpt = None, as_json: JsonOpt = False
    ) -> None:
        """A SKU's rules and the nodes that have it."""
        with ApiClient(api, data_dir) as client:
            body = client.get(f"/api/v1/skus/{name}")
        if as_json:
            print_json(body)
            return
        cells = [
            (r["path"], *next((k, json.dumps(v)) for k, v in r.items() if k != "path"))
            for r in body["rules"]
        ]
        console().print(table(f"SKU {name}", ("path", "operator", "value"), cells))
        console().print(f"nodes: {', '.join(body['nodes']) or '(none)'}")
