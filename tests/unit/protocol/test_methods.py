"""The method registry answers every command: result, unknown method, bad params, or error."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from hwfleet.protocol import envelope, methods
from hwfleet.protocol.errors import ErrorCode, MethodError
from hwfleet.protocol.methods import MethodRegistry


def make_registry() -> MethodRegistry[list[str]]:
    registry: MethodRegistry[list[str]] = MethodRegistry()

    async def echo(ctx: list[str], params: dict[str, Any]) -> dict[str, Any]:
        ctx.append("echo")
        return params

    async def status(ctx: list[str], params: methods.TaskStatus) -> methods.TaskStatus:
        return params

    async def fail(ctx: list[str], params: dict[str, Any]) -> None:
        raise MethodError("disk is protected", ErrorCode.REFUSED)

    async def cache(ctx: list[str], params: dict[str, Any]) -> dict[str, Any]:
        return {"cached": True}

    registry.add("ping", echo)
    registry.add("task_status", status, methods.TaskStatus)
    registry.add("fail", fail)
    registry.add("standby.cache_images", cache)
    return registry


async def test_echo_dispatch_keeps_the_id() -> None:
    calls: list[str] = []
    reply = await make_registry().dispatch(calls, envelope.command("ping", {"x": 1}, id="q"))
    assert reply == envelope.result("q", {"x": 1})
    assert calls == ["echo"]


async def test_unknown_method_is_an_error_reply() -> None:
    reply = await make_registry().dispatch([], envelope.command("nope", id="q"))
    assert isinstance(reply, envelope.Error)
    assert reply.id == "q" and reply.error.code == "unknown_method"
    assert "nope" in reply.error.msg


async def test_wrong_param_types_name_the_field() -> None:
    cmd = envelope.command("task_status", {"task_id": "t", "state": "running", "percent": "x"})
    reply = await make_registry().dispatch([], cmd)
    assert isinstance(reply, envelope.Error) and reply.error.code == "bad_params"
    assert "percent" in reply.error.msg


async def test_struct_validation_rules_are_enforced() -> None:
    for params in (
        {"task_id": "t", "state": "exploded"},
        {"task_id": "t", "state": "running", "percent": 140},
        {"task_id": "t", "state": "error"},
    ):
        reply = await make_registry().dispatch([], envelope.command("task_status", params))
        assert isinstance(reply, envelope.Error) and reply.error.code == "bad_params", params


async def test_handler_errors_become_error_replies() -> None:
    reply = await make_registry().dispatch([], envelope.command("fail", id="f"))
    assert reply == envelope.error("f", "disk is protected", "refused")


async def test_seed_spelling_standbye_is_an_alias() -> None:
    reply = await make_registry().dispatch([], envelope.command("standbye.cache_images"))
    assert isinstance(reply, envelope.Result) and reply.result == {"cached": True}


async def test_an_unexpected_exception_is_answered_failed_and_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    registry = make_registry()

    async def explode(ctx: list[str], params: dict[str, Any]) -> None:
        raise RuntimeError("disk vanished\n[SQL: SELECT secret] [parameters: ('hunter2',)]")

    async def not_an_object(ctx: list[str], params: dict[str, Any]) -> list[int]:
        return [1, 2]

    registry.add("explode", explode)
    registry.add("listy", not_an_object)
    reply = await registry.dispatch([], envelope.command("explode", id="e"))
    # Only the first line reaches the peer; the traceback reaches the log.
    assert reply == envelope.error("e", "explode failed: RuntimeError: disk vanished", "failed")
    [record] = [r for r in caplog.records if r.exc_info]
    assert record.getMessage() == "explode failed" and "disk vanished" in caplog.text
    reply = await registry.dispatch([], envelope.command("listy", id="l"))
    assert isinstance(reply, envelope.Error) and reply.error.code == "failed"
    assert reply.error.msg == "listy failed: TypeError: a result must be an object, not list"


async def test_a_long_failure_text_is_cut_short() -> None:
    registry = make_registry()

    async def explode(ctx: list[str], params: dict[str, Any]) -> None:
        raise ValueError("x" * 10_000)

    registry.add("explode", explode)
    reply = await registry.dispatch([], envelope.command("explode", id="e"))
    assert isinstance(reply, envelope.Error)
    assert len(reply.error.msg) < methods.MAX_FAILURE_TEXT + 100


async def test_cancellation_is_not_turned_into_a_reply() -> None:
    registry = make_registry()

    async def cancelled(ctx: list[str], params: dict[str, Any]) -> None:
        raise asyncio.CancelledError

    registry.add("cancelled", cancelled)
    with pytest.raises(asyncio.CancelledError):
        await registry.dispatch([], envelope.command("cancelled"))
