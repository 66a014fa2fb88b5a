"""The planner's readiness rules and SKU matching (pure functions)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from hwfleet.workflows.definitions import DefinitionError
from hwfleet.workflows.planner import TaskView, plan
from hwfleet.workflows.skus import best, parse_sku


def t(label: str, state: str, wait: dict[str, str] | None = None, **kw: bool) -> TaskView:
    return TaskView(label, label, state, not wait, wait or {}, kw.get("ignore", False))


def test_waiton_states() -> None:
    p = plan(
        [
            t("a", "failed", ignore=True),
            t("ok", "pending", {"a": "failed"}),
            t("fin", "pending", {"a": "finished"}),
            t("no", "pending", {"a": "succeeded"}),
            t("after-no", "pending", {"no": "succeeded"}),
        ]
    )
    assert sorted(p.ready) == ["fin", "ok"]
    assert p.skipped == ["no", "after-no"]
    assert p.graph_status is None


def test_graph_status() -> None:
    assert plan([t("a", "succeeded"), t("b", "failed", ignore=True)]).graph_status == "succeeded"
    assert plan([t("a", "succeeded"), t("b", "timeout")]).graph_status == "failed"
    assert plan([t("a", "running")]).graph_status is None


CATALOG = {"cpu": {"count": 8, "model": "Xeon Gold"}, "disks": [{"size": 512}], "vendor": "Acme"}


def test_sku_operators_and_deepest_match() -> None:
    old = datetime(2026, 1, 1, tzinfo=UTC)
    new = datetime(2026, 2, 1, tzinfo=UTC)
    shallow = parse_sku({"name": "acme", "rules": [{"path": "vendor", "equals": "Acme"}]}, new)
    deep = parse_sku(
        {
            "name": "acme-8",
            "rules": [
                {"path": "cpu.count", "min": 8},
                {"path": "cpu.model", "regex": "^Xeon"},
                {"path": "disks.0.size", "greaterThan": 100},
                {"path": "vendor", "in": ["Acme", "Other"]},
            ],
        },
        old,
    )
    twin = parse_sku(
        {
            "name": "acme-8-newer",
            "rules": [{"path": "cpu.count", "max": 8}, {"path": "cpu.model", "contains": "Gold"}],
        },
        new,
    )
    miss = parse_sku({"name": "miss", "rules": [{"path": "cpu.count", "lessThan": 4}]}, new)
    assert best([shallow, deep, miss], CATALOG) is deep
    assert best([shallow, miss], CATALOG) is shallow
    # Same depth (2) but deep has more rules; twin only wins against equals.
    assert best([deep, twin], CATALOG) is deep
    assert best([miss], CATALOG) is None
    assert best([parse_sku({"name": "x", "rules": [{"path": "nope", "notIn": [1]}]})], {}) is None


def test_sku_tie_goes_to_newest() -> None:
    a = parse_sku(
        {"name": "a", "rules": [{"path": "vendor", "equals": "Acme"}]},
        datetime(2026, 1, 1, tzinfo=UTC),
    )
    b = parse_sku(
        {"name": "b", "rules": [{"path": "vendor", "notRegex": "^X"}]},
        datetime(2026, 3, 1, tzinfo=UTC),
    )
    assert best([a, b], CATALOG) is b


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"rules": [{"path": "a", "equals": 1}]}, "name"),
        ({"name": "x", "rules": []}, "rules"),
        ({"name": "x", "rules": [{"equals": 1}]}, "rules[0].path"),
        ({"name": "x", "rules": [{"path": "a", "bogus": 1}]}, "rules[0]"),
        ({"name": "x", "rules": [{"path": "a", "min": "z"}]}, "rules[0].min"),
        ({"name": "x", "rules": [{"path": "a", "regex": "("}]}, "rules[0].regex"),
    ],
)
def test_bad_skus_name_the_field(body: dict[str, object], field: str) -> None:
    with pytest.raises(DefinitionError) as info:
        parse_sku(body)
    assert info.value.field == field
