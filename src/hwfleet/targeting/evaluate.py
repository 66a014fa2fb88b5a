"""Evaluate a parsed target expression over device records (plain dicts, the API's shape).

A bare word selects, in this order: the device whose uuid it is; the devices whose name
or serial it is; the one device whose uuid starts with it (at least
:data:`MIN_PREFIX` characters; several is an error that lists them). A word with
``*``, ``?`` or ``[`` is a glob over names and serials. Fact values are globs over the
record's field (``state=online``, ``model_id=X11*``, ``st_id=0``). A comparison
(``st_id<0``, ``st_id>=16``) selects the devices whose field is a number in range (a
field that is not a number, or absent, never matches). A group is its static
members, or its stored expression evaluated here (a group may name other groups; a cycle
is an error).
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Iterable, Mapping, Sequence
from fnmatch import fnmatchcase
from typing import Any

from hwfleet.store.groups import StoredGroup
from hwfleet.targeting.grammar import (
    And,
    Compare,
    Fact,
    Group,
    Node,
    Not,
    Or,
    TargetError,
    Word,
    parse,
)

#: The shortest uuid prefix accepted as a target (and shown by ``hwfleet devices``).
MIN_PREFIX = 4
#: Candidates named in an "ambiguous prefix" error.
MAX_CANDIDATES = 10


_ORDER: dict[str, Callable[[float, float], bool]] = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}

GroupLookup = Callable[[str], StoredGroup | None]


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)


def _number(value: Any) -> float | None:
    """``value`` as a number for a comparison; None for text that is not one (and bools)."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        return float(value)
    try:
        return float(str(value))
    except ValueError:
        return None


class Evaluator:
    """Resolves expressions over one snapshot of the fleet (``devices``) and its groups."""

    def __init__(self, devices: Sequence[Mapping[str, Any]], groups: GroupLookup) -> None:
        self.devices = list(devices)
        self.by_uuid = {str(d["uuid"]): d for d in self.devices}
        self.fields = sorted({k for d in self.devices for k in d} | {"uuid", "name", "serial"})
        self._groups = groups
        self._resolving: list[str] = []

    def select(self, expr: str) -> list[dict[str, Any]]:
        """The devices ``expr`` selects, in the fleet's order."""
        chosen = self.uuids(parse(expr), expr)
        return [dict(d) for d in self.devices if d["uuid"] in chosen]

    def uuids(self, node: Node, expr: str) -> set[str]:
        if isinstance(node, Word):
            return self._word(node, expr)
        if isinstance(node, Fact):
            return self._fact(node, expr)
        if isinstance(node, Compare):
            return self._compare(node, expr)
        if isinstance(node, Group):
            return self._group(node, expr)
        if isinstance(node, Not):
            return set(self.by_uuid) - self.uuids(node.operand, expr)
        sets = [self.uuids(n, expr) for n in node.operands]
        if isinstance(node, And):
            return set.intersection(*sets)
        assert isinstance(node, Or)
        return set.union(*sets)

    def _word(self, node: Word, expr: str) -> set[str]:
        text = node.text
        if node.is_glob:
            return {
                u
                for u, d in self.by_uuid.items()
                if fnmatchcase(_text(d.get("name")), text)
                or fnmatchcase(_text(d.get("serial")), text)
            }
        if text in self.by_uuid:
            return {text}
        named = {
            u
            for u, d in self.by_uuid.items()
            if _text(d.get("name")) == text or _text(d.get("serial")) == text
        }
        if named:
            return named
        lowered = text.lower()
        prefixed = sorted(u for u in self.by_uuid if u.lower().startswith(lowered))
        if len(prefixed) == 1 and len(text) >= MIN_PREFIX:
            return set(prefixed)
        if len(prefixed) > 1 and len(text) >= MIN_PREFIX:
            shown = ", ".join(
                f"{u} ({_text(self.by_uuid[u].get('name'))})" for u in prefixed[:MAX_CANDIDATES]
            )
            more = f" and {len(prefixed) - MAX_CANDIDATES} more" if len(prefixed) > 10 else ""
            raise TargetError(
                f"{text!r} is an ambiguous uuid prefix: {shown}{more}", expr, node.pos
            )
        short = f" (a uuid prefix needs {MIN_PREFIX} characters)" if prefixed else ""
        raise TargetError(f"no device has the uuid, name or serial {text!r}{short}", expr, node.pos)

    def _known_field(self, field: str, pos: int, expr: str) -> None:
        if field not in self.fields:
            known = ", ".join(self.fields)
            raise TargetError(f"unknown field {field!r} (fields: {known})", expr, pos)

    def _fact(self, node: Fact, expr: str) -> set[str]:
        self._known_field(node.field, node.pos, expr)
        hits = {
            u
            for u, d in self.by_uuid.items()
            if any(fnmatchcase(_text(d.get(node.field)), v) for v in node.values)
        }
        return set(self.by_uuid) - hits if node.negated else hits

    def _compare(self, node: Compare, expr: str) -> set[str]:
        self._known_field(node.field, node.pos, expr)
        test = _ORDER[node.op]
        return {
            u
            for u, d in self.by_uuid.items()
            if (n := _number(d.get(node.field))) is not None and test(n, node.value)
        }

    def _group(self, node: Group, expr: str) -> set[str]:
        if node.name in self._resolving:
            cycle = " → ".join([*self._resolving, node.name])
            raise TargetError(f"groups refer to each other in a cycle: {cycle}", expr, node.pos)
        group = self._groups(node.name)
        if group is None:
            raise TargetError(f"no group {node.name!r} (hwfleet groups list)", expr, node.pos)
        if group.expr is None:
            return set(group.members) & set(self.by_uuid)
        self._resolving.append(node.name)
        try:
            return self.uuids(parse(group.expr), group.expr)
        except TargetError as exc:
            if exc.expr == group.expr and exc.expr != expr:
                raise TargetError(f"in group {node.name!r}: {exc}", expr, node.pos) from None
            raise
        finally:
            self._resolving.pop()


def short_prefixes(uuids: Iterable[str], minimum: int = MIN_PREFIX) -> dict[str, str]:
    """Each uuid's shortest unique prefix of at least ``minimum`` characters (like git)."""
    ordered = sorted(set(uuids))
    out: dict[str, str] = {}
    for i, u in enumerate(ordered):
        need = minimum
        for other in ordered[max(i - 1, 0) : i] + ordered[i + 1 : i + 2]:
            common = 0
            while common < min(len(u), len(other)) and u[common] == other[common]:
                common += 1
            need = max(need, common + 1)
        out[u] = u[: min(need, len(u))]
    return out
