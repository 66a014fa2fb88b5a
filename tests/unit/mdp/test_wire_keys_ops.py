"""MDP building blocks: the MAC's canonical form, the nonce cache's bounds, key files,
operation plugins (entry points) and the cluster performance score."""

from __future__ import annotations

import hashlib
import hmac
import json
import stat
import sys
from pathlib import Path
from typing import Any

import pytest

from hwfleet.mdp import cluster, wire
from hwfleet.mdp.keys import KeyFileError, KnownMachines, load_or_create_key
from hwfleet.mdp.operations import OperationContext, Operations, load_operations
from hwfleet.mdp.replay import NonceCache
from hwfleet.mdp.split import pack_reply


def test_mac_is_hmac_sha256_of_sorted_compact_json_without_mac() -> None:
    key = b"k" * 32
    obj = wire.sign(key, {"operations": [{"name": "é"}], "version": "2"})
    body = {k: v for k, v in obj.items() if k != "mac"}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"))
    assert obj["mac"] == hmac.new(key, text.encode(), hashlib.sha256).hexdigest()
    assert wire.verify(key, obj)
    assert not wire.verify(key, {**obj, "operations": []})
    assert not wire.verify(b"x" * 32, obj)


def test_nonce_cache_refuses_replays_and_never_evicts_a_live_nonce() -> None:
    cache = NonceCache(capacity=2, window=30)
    assert cache.admit("a" * 16, 100.0) is None
    assert cache.admit("a" * 16, 101.0) == "replay"
    assert cache.admit("b" * 16, 101.0) is None
    assert cache.admit("c" * 16, 102.0) == "busy"  # full of nonces that could still replay
    assert cache.admit("c" * 16, 100.0 + 62) is None  # "a" expired: room again
    assert len(cache) == 2


def test_machine_key_is_made_once_with_0600(tmp_path: Path) -> None:
    key = load_or_create_key(tmp_path)
    path = tmp_path / "mdp.key"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_or_create_key(tmp_path) == key and len(key) == 32
    path.write_text("not hex")
    with pytest.raises(KeyFileError, match=r"mdp\.key"):
        load_or_create_key(tmp_path)


def test_known_machines_are_private_and_named_by_address(tmp_path: Path) -> None:
    known = KnownMachines(tmp_path)
    assert known.put("10.0.0.5", b"\x01" * 32) is True
    assert known.put("10.0.0.5", b"\x01" * 32) is False  # unchanged
    assert known.get("10.0.0.5") == b"\x01" * 32
    assert stat.S_IMODE(known.root.stat().st_mode) == 0o700
    assert stat.S_IMODE(known.path("10.0.0.5").stat().st_mode) == 0o600
    assert known.addresses() == ["10.0.0.5"]
    with pytest.raises(ValueError, match="not an IP address"):
        known.get("../../etc/passwd")


def test_an_operation_without_a_docstring_is_refused() -> None:
    def undocumented(ctx: OperationContext) -> None:
        pass

    with pytest.raises(ValueError, match="no docstring"):
        Operations().add("undocumented", undocumented)


async def test_entry_point_plugins_join_the_operations(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "mdp_test_plugin.py").write_text(
        'def uptime_twice(ctx, factor=2):\n    """Twice the answer."""\n    return 21 * factor\n'
    )
    dist = tmp_path / "mdp_test_plugin-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: mdp-test-plugin\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(
        "[hwfleet.mdp_operations]\ndoubled = mdp_test_plugin:uptime_twice\n"
        "broken = mdp_test_plugin:missing\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    ops = load_operations()
    assert "doubled" in ops.names() and "broken" not in ops.names()
    assert ops.help()["doubled"] == "Twice the answer."
    entry = await ops.run(OperationContext(ops), "doubled", {"factor": 2})
    assert entry == {"name": "doubled", "status": True, "result": 42}
    sys.modules.pop("mdp_test_plugin", None)


def test_a_reply_that_fits_is_one_datagram_without_part_fields() -> None:
    [one] = pack_reply({"status": True, "version": "2"}, [{"name": "a", "status": True}], b"k")
    obj: dict[str, Any] = json.loads(one)
    assert "part" not in obj and wire.verify(b"k", obj)


@pytest.mark.parametrize(
    ("inputs", "score"),
    [
        ({"spare_cpu": 0.0, "disk_mbps": 0.0, "free": 0.0}, 1),
        ({"spare_cpu": 1.0, "disk_mbps": 400.0, "free": 1.0}, 9),
        ({"spare_cpu": 0.5, "disk_mbps": 100.0, "free": 0.5}, 5),
    ],
)
def test_performance_score_follows_the_documented_formula(
    inputs: dict[str, float], score: int
) -> None:
    assert cluster.performance(inputs) == score


def test_measure_reads_the_folder(tmp_path: Path) -> None:
    inputs = cluster.measure(tmp_path)
    assert 0 <= inputs["spare_cpu"] <= 1 and 0 <= inputs["free"] <= 1
    assert inputs["disk_mbps"] > 0
    assert list(tmp_path.iterdir()) == []  # the probe file is gone
