"""Numeric comparisons in target expressions (``st_id<0``, ``st_id>=16``): property tests
against a plain filter, their errors, and how they combine with the other terms."""

from __future__ import annotations

import operator
import uuid as uuidlib
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hwfleet.targeting import Evaluator, StoredGroup, TargetError, parse, unparse
from hwfleet.targeting.grammar import Compare

OPS: dict[str, Callable[[Any, Any], bool]] = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}
OPPOSITE = {"<": ">=", "<=": ">", ">": "<=", ">=": "<"}


def no_groups(_: str) -> StoredGroup | None:
    return None


def devices(values: list[Any]) -> list[dict[str, Any]]:
    return [
        {"uuid": str(uuidlib.UUID(int=i + 1)), "name": f"d{i}", "serial": 1000 + i, "st_id": v}
        for i, v in enumerate(values)
    ]


ids = st.integers(min_value=-(2**31), max_value=2**31)
numbers = st.one_of(ids.map(str), st.floats(-1e6, 1e6, allow_nan=False).map(repr))


@given(st.lists(ids, min_size=1, max_size=30), st.sampled_from(sorted(OPS)), numbers)
def test_a_comparison_selects_what_a_plain_filter_selects(
    values: list[int], op: str, number: str
) -> None:
    fleet = devices(values)
    got = {d["name"] for d in Evaluator(fleet, no_groups).select(f"st_id{op}{number}")}
    assert got == {d["name"] for d in fleet if OPS[op](d["st_id"], float(number))}


@given(st.lists(ids, min_size=1, max_size=30), st.sampled_from(sorted(OPS)), ids)
def test_not_is_the_opposite_comparison(values: list[int], op: str, number: int) -> None:
    ev = Evaluator(devices(values), no_groups)
    negated = ev.uuids(parse(f"not st_id{op}{number}"), "")
    assert negated == ev.uuids(parse(f"st_id{OPPOSITE[op]}{number}"), "")


@given(st.sampled_from(["st_id", "serial", "name"]), st.sampled_from(sorted(OPS)), numbers)
def test_comparisons_unparse_to_the_same_tree(field: str, op: str, number: str) -> None:
    tree = parse(f"{field}{op}{number}")
    assert tree == Compare(field, op, float(number), number, 0)
    assert parse(unparse(tree)) == tree


def test_text_and_missing_values_never_compare() -> None:
    fleet = [*devices([0, 5]), {"uuid": str(uuidlib.UUID(int=99)), "name": "x", "st_id": "n/a"}]
    fleet.append({"uuid": str(uuidlib.UUID(int=98)), "name": "y", "st_id": None})
    ev = Evaluator(fleet, no_groups)
    assert [d["name"] for d in ev.select("st_id>=0")] == ["d0", "d1"]
    assert [d["name"] for d in ev.select("name>0")] == []
    assert [d["name"] for d in ev.select("serial>1000 or st_id<0")] == ["d1"]
    assert [d["name"] for d in ev.select("st_id>=0 and not st_id=5")] == ["d0"]


@pytest.mark.parametrize(
    ("text", "pos", "says"),
    [
        ("st_id<", 6, "expected a number after '<', found the end"),
        ("st_id>=high", 7, "expected a number after '>=', found 'high'"),
        ("st_id<nan", 6, "expected a number"),
        ("st_id>-inf", 6, "expected a number"),
        ("st_id<(", 6, "expected a number after '<', found '('"),
        ("<3", 0, "expected a uuid"),
        ("bad-field<3", 0, "not a field name"),
        ("st_id<3 4", 8, "unexpected '4'"),
    ],
)
def test_comparison_errors_point_at_the_fault(text: str, pos: int, says: str) -> None:
    with pytest.raises(TargetError) as caught:
        parse(text)
    assert caught.value.pos == pos
    assert says in str(caught.value)
    assert str(caught.value).splitlines()[-1] == "  " + " " * pos + "^"


def test_an_unknown_field_points_at_it() -> None:
    with pytest.raises(TargetError) as caught:
        Evaluator(devices([1]), no_groups).select("name=x or bogus>=2")
    assert caught.value.pos == 10 and "unknown field 'bogus'" in str(caught.value)
