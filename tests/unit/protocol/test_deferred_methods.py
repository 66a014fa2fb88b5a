"""Methods registered by reference: listed at once, imported on their first call, answered alike."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from hwfleet.protocol import envelope
from hwfleet.protocol.methods import MethodRegistry

MODULE = "deferred_probe_cmds"
SOURCE = '''
"""A command module that records its own import."""
import msgspec

IMPORTS = []
IMPORTS.append(1)


class CacheParams(msgspec.Struct, forbid_unknown_fields=True):
    task_id: str


async def cache(ctx, params):
    ctx.append(params.task_id)
    return {"cached": params.task_id}


NOT_A_TYPE = 3
'''


@pytest.fixture
def probe_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    (tmp_path / f"{MODULE}.py").write_text(SOURCE)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield MODULE
    sys.modules.pop(MODULE, None)


def registry_for(module: str) -> MethodRegistry[list[str]]:
    registry: MethodRegistry[list[str]] = MethodRegistry()
    registry.defer("standby.cache_images", f"{module}:cache", f"{module}:CacheParams")
    return registry


async def test_listed_before_import_and_imported_once_on_first_call(probe_module: str) -> None:
    registry = registry_for(probe_module)
    assert registry.names() == ["standby.cache_images"]
    assert "standbye.cache_images" in registry, "the seed-001 spelling reaches it too"
    assert probe_module not in sys.modules, "registering must not import the module"

    calls: list[str] = []
    for task in ("t1", "t2"):
        cmd = envelope.command("standbye.cache_images", {"task_id": task}, id=task)
        assert await registry.dispatch(calls, cmd) == envelope.result(task, {"cached": task})
    assert calls == ["t1", "t2"]
    assert sys.modules[probe_module].IMPORTS == [1]


async def test_a_deferred_params_struct_is_enforced(probe_module: str) -> None:
    cmd = envelope.command("standby.cache_images", {"task_id": "t", "extra": 1}, id="b")
    reply = await registry_for(probe_module).dispatch([], cmd)
    assert isinstance(reply, envelope.Error) and reply.error.code == "bad_params"
    assert "extra" in reply.error.msg


async def test_unknown_methods_stay_unknown_and_import_nothing(probe_module: str) -> None:
    reply = await registry_for(probe_module).dispatch([], envelope.command("standby.nope"))
    assert isinstance(reply, envelope.Error) and reply.error.code == "unknown_method"
    assert probe_module not in sys.modules


@pytest.mark.parametrize(
    ("handler", "params", "words"),
    [
        ("deferred_probe_gone:cache", None, "No module named 'deferred_probe_gone'"),
        (f"{MODULE}:missing", None, "missing"),
        (f"{MODULE}:cache", f"{MODULE}:NOT_A_TYPE", "is not a type"),
    ],
)
async def test_a_reference_that_names_nothing_is_answered_failed(
    probe_module: str,
    handler: str,
    params: str | None,
    words: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.ERROR, logger="hwfleet.protocol.methods")
    registry: MethodRegistry[list[str]] = MethodRegistry()
    registry.defer("probe.broken", handler, params)
    reply = await registry.dispatch([], envelope.command("probe.broken", id="x"))
    assert isinstance(reply, envelope.Error) and reply.error.code == "failed"
    assert reply.error.msg.startswith("probe.broken failed: ") and words in reply.error.msg
    assert "probe.broken could not be loaded" in caplog.text
