"""The method registry answers every command: result, unknown method, bad params, or error."""

from __future__ import annotations

from typing import Any

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
