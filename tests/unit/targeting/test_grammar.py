"""The target grammar: property tests for the parser, and the evaluation rules."""

from __future__ import annotations

import string
import uuid as uuidlib
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hwfleet.targeting import Evaluator, StoredGroup, TargetError, parse, short_prefixes, unparse
from hwfleet.targeting.grammar import And, Compare, Fact, Group, Node, Not, Or, Word, is_single

WORD_CHARS = string.ascii_letters + string.digits + "-_.:*?/@+"
words = st.text(WORD_CHARS, min_size=1, max_size=12).filter(
    lambda w: w.lower() not in ("and", "or", "not")
)
quoted = st.text(string.printable.replace("'", "").replace('"', ""), min_size=1, max_size=10)
fields = st.sampled_from(["name", "state", "model_id", "st_id", "serial"])


def trees() -> st.SearchStrategy[Node]:
    leaves = st.one_of(
        st.builds(Word, st.one_of(words, quoted), st.just(0)),
        st.builds(
            Fact,
            fields,
            st.lists(st.one_of(words, quoted), min_size=1, max_size=3).map(tuple),
            st.booleans(),
            st.just(0),
        ),
        st.builds(
            lambda f, op, n: Compare(f, op, float(n), str(n), 0),
            fields,
            st.sampled_from(["<", "<=", ">", ">="]),
            st.integers(-100, 100),
        ),
        st.builds(Group, st.from_regex(r"[a-z][a-z0-9_.-]{0,8}", fullmatch=True), st.just(0)),
    )
    return st.recursive(
        leaves,
        lambda inner: st.one_of(
            st.builds(Not, inner),
            st.lists(inner, min_size=2, max_size=3).map(lambda xs: And(tuple(xs))),
            st.lists(inner, min_size=2, max_size=3).map(lambda xs: Or(tuple(xs))),
        ),
        max_leaves=8,
    )


@settings(max_examples=400)
@given(trees())
def test_unparse_then_parse_gives_the_same_tree(tree: Node) -> None:
    text = unparse(tree)
    assert unparse(parse(text)) == text


@settings(max_examples=300)
@given(st.text(string.printable, max_size=40))
def test_any_text_parses_or_fails_with_a_position_inside_it(text: str) -> None:
    try:
        parse(text)
    except TargetError as exc:
        assert exc.pos is None or 0 <= exc.pos <= len(text)
        assert exc.msg


@pytest.mark.parametrize(
    ("text", "pos", "says"),
    [
        ("", 0, "empty target"),
        ("G@rack1 and (state=online", 25, "expected ')'"),
        ("a and", 5, "expected a uuid"),
        ("a b", 2, "unexpected 'b'"),
        ("state=", 6, "expected a value"),
        ("'open", 0, "unclosed quote"),
        ("a )", 2, "')' without '('"),
        ("G@", 0, "group name"),
        ("bad-field=x", 0, "not a field name"),
        ("and x", 0, "before 'and'"),
    ],
)
def test_errors_point_at_the_fault(text: str, pos: int, says: str) -> None:
    with pytest.raises(TargetError) as caught:
        parse(text)
    assert caught.value.pos == pos
    assert says in str(caught.value)
    assert str(caught.value).splitlines()[-1] == "  " + " " * pos + "^"


def test_precedence_comma_not_and_or() -> None:
    tree = parse("a,b and not c or G@g")
    assert isinstance(tree, Or)
    first = tree.operands[0]
    assert isinstance(first, And) and isinstance(first.operands[0], Or)
    assert isinstance(first.operands[1], Not)
    assert parse("state=online,offline") == Fact("state", ("online", "offline"), False, 0)
    tree = parse("state=online,model_id=X")
    assert isinstance(tree, Or) and len(tree.operands) == 2
    assert is_single(parse("rack1-u1")) and not is_single(parse("rack1-*"))
    assert not is_single(parse("a,b"))


def test_nesting_is_bounded() -> None:
    with pytest.raises(TargetError, match="nested deeper"):
        parse("(" * 200 + "a" + ")" * 200)


def fleet(n: int) -> list[dict[str, Any]]:
    return [
        {
            "uuid": str(uuidlib.uuid5(uuidlib.NAMESPACE_DNS, f"d{i}")),
            "name": f"rack{i % 3}-u{i}",
            "serial": 1000 + i,
            "model_id": "X11-A" if i % 2 else "X9-B",
            "state": "online" if i % 4 else "offline",
            "st_id": 0 if i % 5 else -1,
        }
        for i in range(n)
    ]


def no_groups(_: str) -> StoredGroup | None:
    return None


def names(devices: list[dict[str, Any]]) -> set[str]:
    return {d["name"] for d in devices}


def test_words_globs_facts_and_compounds() -> None:
    ev = Evaluator(fleet(12), no_groups)
    assert names(ev.select("rack1-*")) == {"rack1-u1", "rack1-u4", "rack1-u7", "rack1-u10"}
    assert names(ev.select("rack1-u1,1002")) == {"rack1-u1", "rack2-u2"}
    assert names(ev.select("rack1-* and state=online and not model_id=X9*")) == {
        "rack1-u1",
        "rack1-u7",
    }
    assert names(ev.select("st_id=-1")) == {"rack0-u0", "rack2-u5", "rack1-u10"}
    assert names(ev.select("st_id!=0 and serial=100?")) == {"rack0-u0", "rack2-u5"}
    with pytest.raises(TargetError, match="unknown field 'sku'"):
        ev.select("sku=gpu")
    with pytest.raises(TargetError, match="no device has"):
        ev.select("rack9-u1")


def test_uuid_prefixes_resolve_or_name_the_candidates() -> None:
    devices = [{"uuid": u, "name": f"n{i}"} for i, u in enumerate(["abcd1111", "abcd2222", "ef01"])]
    ev = Evaluator(devices, no_groups)
    assert names(ev.select("abcd1")) == {"n0"}
    assert names(ev.select("ef01")) == {"n2"}
    with pytest.raises(TargetError) as caught:
        ev.select("abcd")
    assert "ambiguous" in str(caught.value)
    assert "abcd1111 (n0)" in str(caught.value) and "abcd2222 (n1)" in str(caught.value)
    with pytest.raises(TargetError, match="needs 4 characters"):
        ev.select("ab")


def test_groups_static_expression_nested_and_cycles() -> None:
    devices = fleet(6)
    stored = {
        "r1": StoredGroup("r1", "name=rack1-*", ()),
        "pick": StoredGroup("pick", None, (devices[0]["uuid"], "gone-uuid")),
        "both": StoredGroup("both", "G@r1 or G@pick", ()),
        "loop": StoredGroup("loop", "G@loop2", ()),
        "loop2": StoredGroup("loop2", "G@loop", ()),
    }
    ev = Evaluator(devices, stored.get)
    assert names(ev.select("G@both")) == {"rack1-u1", "rack1-u4", "rack0-u0"}
    with pytest.raises(TargetError, match="cycle: loop → loop2 → loop"):
        ev.select("G@loop")
    with pytest.raises(TargetError, match="no group 'nope'"):
        ev.select("G@nope")


@given(trees(), trees())
def test_de_morgan_holds(a: Node, b: Node) -> None:
    devices = fleet(10)
    groups = {"g": StoredGroup("g", "rack1-*", ())}
    ev = Evaluator(devices, lambda n: groups.get(n) or StoredGroup(n, None, ("x",)))
    try:
        left = ev.uuids(parse(f"not (({unparse(a)}) or ({unparse(b)}))"), "")
    except TargetError:
        return  # a word naming no device: both sides fail alike
    right = ev.uuids(parse(f"not ({unparse(a)}) and not ({unparse(b)})"), "")
    assert left == right


@given(st.lists(st.uuids().map(str), min_size=1, max_size=50, unique=True))
def test_short_prefixes_are_unique_and_resolve(uuids: list[str]) -> None:
    prefixes = short_prefixes(uuids)
    assert len(set(prefixes.values())) == len(uuids)
    ev = Evaluator([{"uuid": u, "name": ""} for u in uuids], no_groups)
    for full, short in prefixes.items():
        assert len(short) >= 4 and full.startswith(short)
        assert [d["uuid"] for d in ev.select(short)] == [full]
