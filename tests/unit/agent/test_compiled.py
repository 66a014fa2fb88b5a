"""The agent's modules compiled by a helper process (hwfleet.agent.compiled)."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import pytest

from hwfleet.agent import compiled
from hwfleet.agent.compiled import MAGIC, Bundle, BundleError, parse_bundle, write_bundle

ROOT = Path(__file__).parents[3]


def bundle_of(names: list[str], monkeypatch: pytest.MonkeyPatch) -> bytes:
    monkeypatch.setattr(sys, "dont_write_bytecode", True)  # everything goes to the bundle
    out = io.BytesIO()
    write_bundle(names, out)
    return out.getvalue()


def test_every_startup_module_has_its_source_where_the_helper_looks() -> None:
    for name in compiled.STARTUP_MODULES:
        assert os.path.exists(compiled.source_path(name)), name
    assert compiled.source_path("hwfleet.protocol").endswith("protocol/__init__.py")
    with pytest.raises(ValueError, match="not a module of hwfleet"):
        compiled.source_path("json")


def test_a_bundle_round_trips_and_serves_code_only_for_an_unchanged_source(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    entries = parse_bundle(bundle_of(["hwfleet.durations", "hwfleet.types"], monkeypatch))
    assert sorted(entries) == ["hwfleet.durations", "hwfleet.types"]
    path = compiled.source_path("hwfleet.durations")
    code = Bundle(entries).code("hwfleet.durations", path)
    assert code is not None and code.co_filename == path
    namespace: dict[str, object] = {}
    exec(code, namespace)  # noqa: S102 - hwfleet's own module, compiled from its source
    assert callable(namespace["parse_duration"])
    # Served once: the bytes go with the first use.
    assert Bundle(entries).code("hwfleet.durations", path) is None
    mtime, size, data = entries["hwfleet.types"]
    stale = Bundle({"hwfleet.types": (mtime - 1, size, data)})
    assert stale.code("hwfleet.types", compiled.source_path("hwfleet.types")) is None


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "magic line"),
        (b"#!/bin/sh\nrm -rf /\n", "magic line"),
        (MAGIC + b"\x05\x00", "header is cut short"),
        (MAGIC + compiled._ENTRY.pack(14, 100, 0, 0) + b"hwfleet.errors", "entry is cut short"),
        (MAGIC + compiled._ENTRY.pack(4, 0, 0, 0) + b"json", "not a module of hwfleet"),
        (MAGIC + compiled._ENTRY.pack(2, 0, 0, 0) + b"\xff\xfe", "not UTF-8"),
    ],
)
def test_output_that_is_not_a_bundle_is_refused_saying_where(data: bytes, message: str) -> None:
    with pytest.raises(BundleError, match=message):
        parse_bundle(data)


def test_a_module_named_twice_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    once = bundle_of(["hwfleet.types"], monkeypatch)
    with pytest.raises(BundleError, match="comes twice"):
        parse_bundle(once + once[len(MAGIC) :])


def run(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if k not in ("PYTHONDONTWRITEBYTECODE",)}
    return subprocess.run(
        [sys.executable, *compiled.HELPER_FLAGS, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        env={**environ, **env},
        check=False,
    )


IMPORT_FROM_BUNDLE = """
import sys
from hwfleet.agent import compiled
names = ["hwfleet.durations", "hwfleet.trust.fingerprints"]
bundle = compiled.precompiled(names)
print("bundle:", bundle is not None)
if bundle is not None:
    bundle.import_all()
import hwfleet.durations, hwfleet.trust.fingerprints
print("loaders:", sorted({type(sys.modules[n].__spec__.loader).__name__ for n in names}))
print("served:", hwfleet.durations.parse_duration("2m"), compiled.uncached(names) == names)
print("finder gone:", not any(isinstance(f, compiled.Bundle) for f in sys.meta_path))
"""


def test_without_a_bytecode_cache_the_agent_imports_what_the_helper_compiled() -> None:
    done = run(IMPORT_FROM_BUNDLE, PYTHONDONTWRITEBYTECODE="1")
    assert done.stdout.splitlines() == [
        "bundle: True",
        "loaders: ['_BundledLoader']",
        "served: 120.0 True",  # still nothing cached: PYTHONDONTWRITEBYTECODE holds
        "finder gone: True",
    ], done.stderr


def test_where_it_may_the_helper_writes_the_bytecode_for_the_next_start(tmp_path: Path) -> None:
    prefix = tmp_path / "pycache"
    done = run(IMPORT_FROM_BUNDLE, PYTHONPYCACHEPREFIX=str(prefix))
    # Nothing to import from a bundle: the .pyc files are where Python looks for them.
    assert done.stdout.splitlines() == [
        "bundle: False",
        "loaders: ['SourceFileLoader']",
        "served: 120.0 False",
        "finder gone: True",
    ], done.stderr
    assert len(list(prefix.rglob("*.opt-2.pyc"))) >= 2


@pytest.mark.parametrize(
    ("helper", "reason"),
    [
        ("raise SystemExit('the helper broke')", "(the helper broke)"),
        ("print('not a bundle')", "(it does not start with the bundle's magic line)"),
    ],
)
def test_a_failing_helper_leaves_the_agent_compiling_for_itself(helper: str, reason: str) -> None:
    done = run(
        "from hwfleet.agent import compiled\n"
        f"compiled.HELPER_FLAGS = ('-c', {helper!r})\n"
        "print(compiled.precompiled(['hwfleet.durations', 'hwfleet.no_such_module']))",
        PYTHONDONTWRITEBYTECODE="1",
    )
    assert done.stdout.strip() == "None"
    assert done.stderr == f"hwfleet agent: compiling its modules itself {reason}\n"


def test_a_module_gone_from_the_source_tree_is_not_asked_of_the_helper() -> None:
    assert compiled.uncached(["hwfleet.no_such_module"]) == []
