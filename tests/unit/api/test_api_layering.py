"""The REST API depends on the controller only through api/ports.py's protocols.

The controller (the composition root) imports the API; an import the other way at run
time would make the two one package again. Imports under ``if TYPE_CHECKING:`` are allowed.
"""

from __future__ import annotations

import ast
from pathlib import Path

import hwfleet.api

API = Path(hwfleet.api.__file__).parent


def runtime_imports(tree: ast.AST) -> list[str]:
    found: list[str] = []

    def visit(node: ast.AST, guarded: bool) -> None:
        for child in ast.iter_child_nodes(node):
            inner = guarded or (
                isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test)
            )
            if not inner and isinstance(child, ast.ImportFrom) and child.module:
                found.append(child.module)
            elif not inner and isinstance(child, ast.Import):
                found.extend(alias.name for alias in child.names)
            visit(child, inner)

    visit(tree, False)
    return found


def test_the_api_imports_nothing_from_the_controller_at_run_time() -> None:
    offending = [
        f"{path.relative_to(API)}: {module}"
        for path in sorted(API.rglob("*.py"))
        for module in runtime_imports(ast.parse(path.read_text(encoding="utf-8")))
        if module == "hwfleet.controller" or module.startswith("hwfleet.controller.")
    ]
    assert offending == []


def test_the_check_sees_an_import_of_the_controller() -> None:
    tree = ast.parse("from hwfleet.controller.scan import ScanService\n")
    assert runtime_imports(tree) == ["hwfleet.controller.scan"]
    guarded = ast.parse("if TYPE_CHECKING:\n    from hwfleet.controller.scan import X\n")
    assert runtime_imports(guarded) == []
