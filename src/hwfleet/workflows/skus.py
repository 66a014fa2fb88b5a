"""SKUs: RackHD's rules over a node's inventory catalog, and which SKU a node is.

A SKU: ``{name, rules: [{path, <operator>: value}], discoveryGraphName?,
discoveryGraphOptions?}``. Operators: equals, in, notIn, contains, notContains,
greaterThan, lessThan, min, max, regex, notRegex. A SKU matches when every rule does;
among matching SKUs the one whose deepest rule path is deepest wins (more rules next),
ties to the newest definition.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from hwfleet.workflows.definitions import DefinitionError

_MISSING = object()


def _num(x: Any) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool)


OPERATORS: dict[str, Callable[[Any, Any], bool]] = {
    "equals": lambda v, x: v == x,
    "in": lambda v, x: v in x,
    "notIn": lambda v, x: v not in x,
    "contains": lambda v, x: isinstance(v, str | list) and x in v,
    "notContains": lambda v, x: not (isinstance(v, str | list) and x in v),
    "greaterThan": lambda v, x: _num(v) and v > x,
    "lessThan": lambda v, x: _num(v) and v < x,
    "min": lambda v, x: _num(v) and v >= x,
    "max": lambda v, x: _num(v) and v <= x,
    "regex": lambda v, x: isinstance(v, str) and re.search(x, v) is not None,
    "notRegex": lambda v, x: not (isinstance(v, str) and re.search(x, v) is not None),
}
_LISTS = ("in", "notIn")
_NUMBERS = ("greaterThan", "lessThan", "min", "max")


@dataclass(frozen=True, slots=True)
class Rule:
    path: tuple[str, ...]
    operator: str
    value: Any

    def matches(self, catalog: Any) -> bool:
        found = lookup(catalog, self.path)
        if found is _MISSING:
            return False
        return bool(OPERATORS[self.operator](found, self.value))


@dataclass(frozen=True, slots=True)
class Sku:
    name: str
    rules: tuple[Rule, ...]
    body: dict[str, Any]
    updated_at: datetime | None = None

    @property
    def depth(self) -> tuple[int, int]:
        return (max(len(r.path) for r in self.rules), len(self.rules))

    def matches(self, catalog: Any) -> bool:
        return all(rule.matches(catalog) for rule in self.rules)


def lookup(catalog: Any, path: Sequence[str]) -> Any:
    """``a.b.0.c`` into nested objects and lists; a missing step is _MISSING."""
    here = catalog
    for step in path:
        if isinstance(here, dict) and step in here:
            here = here[step]
        elif isinstance(here, list) and step.isdigit() and int(step) < len(here):
            here = here[int(step)]
        else:
            return _MISSING
    return here


def parse_sku(body: Any, updated_at: datetime | None = None) -> Sku:
    if not isinstance(body, dict):
        raise DefinitionError("definition", "must be a JSON object")
    name = body.get("name")
    if not isinstance(name, str) or not name or len(name) > 200:
        raise DefinitionError("name", "is required and must be a non-empty string")
    rules_raw = body.get("rules")
    if not isinstance(rules_raw, list) or not rules_raw:
        raise DefinitionError("rules", "is required and must be a non-empty list")
    rules = [_rule(raw, f"rules[{i}]") for i, raw in enumerate(rules_raw)]
    graph = body.get("discoveryGraphName")
    if graph is not None and not isinstance(graph, str):
        raise DefinitionError("discoveryGraphName", "must be a graph name")
    if not isinstance(body.get("discoveryGraphOptions", {}), dict):
        raise DefinitionError("discoveryGraphOptions", "must be a JSON object")
    return Sku(name, tuple(rules), body, updated_at)


def _rule(raw: Any, path: str) -> Rule:
    if not isinstance(raw, dict):
        raise DefinitionError(path, "must be a JSON object")
    where = raw.get("path")
    if not isinstance(where, str) or not where.strip("."):
        raise DefinitionError(f"{path}.path", "is required: a dotted path into the catalog")
    ops = [k for k in raw if k != "path"]
    if len(ops) != 1 or ops[0] not in OPERATORS:
        raise DefinitionError(
            path, f"needs exactly one operator of {', '.join(OPERATORS)}; has {ops or 'none'}"
        )
    op, value = ops[0], raw[ops[0]]
    if op in _LISTS and not isinstance(value, list):
        raise DefinitionError(f"{path}.{op}", "must be a list")
    if op in _NUMBERS and not _num(value):
        raise DefinitionError(f"{path}.{op}", "must be a number")
    if op in ("regex", "notRegex"):
        if not isinstance(value, str):
            raise DefinitionError(f"{path}.{op}", "must be a regular expression string")
        try:
            re.compile(value)
        except re.error as exc:
            raise DefinitionError(f"{path}.{op}", f"bad regular expression: {exc}") from None
    return Rule(tuple(where.strip(".").split(".")), op, value)


def best(skus: Sequence[Sku], catalog: Any) -> Sku | None:
    """The deepest matching SKU; ties go to the newest definition."""
    matching = [s for s in skus if s.matches(catalog)]
    if not matching:
        return None

    def key(s: Sku) -> tuple[int, int, float]:
        at = s.updated_at.timestamp() if s.updated_at else 0.0
        return (*s.depth, at)

    return max(matching, key=key)
