"""The house rules of the package layout (docs/architecture.md), checked on the source.

Top-level packages form no import cycle; the agent, which runs on every device, imports
nothing of the controller side; the foundations (``protocol``, ``bus``, ``store``) import
nothing above them. Imports under ``if TYPE_CHECKING:`` count too: a type-only import is
still a dependency a reader has to follow.
"""

from __future__ import annotations

import ast
import functools
from collections.abc import Iterator
from pathlib import Path

import hwfleet

SRC = Path(hwfleet.__file__).parent
#: Root modules every package may use: vocabulary, errors, lazy exports, the version.
BASE = {"errors", "types", "durations", "_lazy", "__version__"}
#: What each foundation may import besides BASE.
FOUNDATIONS = {
    "protocol": set(),
    "bus": {"protocol"},
    "store": {"bus", "protocol"},
}
AGENT_FORBIDDEN = {"controller", "store", "api", "cli", "sim", "integrations"}


def _imports(path: Path) -> Iterator[str]:
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "hwfleet":
                yield from (f"hwfleet.{alias.name}" for alias in node.names)
            else:
                yield node.module
        elif isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)


@functools.cache
def top_level_edges() -> dict[str, set[str]]:
    """``{package: {packages it imports}}`` over the first component under ``hwfleet``."""
    edges: dict[str, set[str]] = {}
    for path in SRC.rglob("*.py"):
        source = path.relative_to(SRC).with_suffix("").parts[0]
        for module in _imports(path):
            if module.startswith("hwfleet."):
                target = module.split(".")[1]
                if target != source:
                    edges.setdefault(source, set()).add(target)
    return edges


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one package (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in edges.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in list(edges):
        if node not in index:
            visit(node)
    return found


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_top_level_packages_form_no_cycle() -> None:
    assert cycles(top_level_edges()) == []


def test_the_agent_imports_nothing_of_the_controller_side() -> None:
    assert top_level_edges()["agent"] & AGENT_FORBIDDEN == set()


def test_foundations_import_nothing_above_them() -> None:
    edges = top_level_edges()
    wrong = {
        package: sorted(edges.get(package, set()) - BASE - allowed)
        for package, allowed in FOUNDATIONS.items()
        if edges.get(package, set()) - BASE - allowed
    }
    assert wrong == {}
