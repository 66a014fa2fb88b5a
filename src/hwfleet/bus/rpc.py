"""The server half of bus RPC that both backends share: find the handler, answer.

A request is a JSON object on ``methods.<name>``; the answer is the handler's
result object, or an error object when the params are bad, the method is
unknown or the handler fails. Every request that can be answered is answered,
so a caller never waits out its deadline because of bad input.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping

import msgspec

from hwfleet.bus.base import RejectedMessageError, RpcError, RpcHandler
from hwfleet.bus.codec import REPLY_ERROR, REPLY_RESULT, decode_object, encode_body, encode_error
from hwfleet.bus.routing import topic_matcher
from hwfleet.bus.topology import method_key
from hwfleet.types import JsonObject

log = logging.getLogger(__name__)

_METHOD_PREFIX = "methods."


class KeyedHandler:
    """An RPC handler that also gets the method name: a pattern such as
    ``requestProfile.*`` needs the id the caller put in the routing key."""

    def __init__(self, handler: Callable[[str, JsonObject], Awaitable[JsonObject]]) -> None:
        self.keyed = handler

    async def __call__(self, params: JsonObject) -> JsonObject:
        raise RejectedMessageError("this method needs its routing key")


class RpcDispatcher:
    """Maps ``methods.<name>`` routing keys to handlers (names may hold ``*`` / ``#``)."""

    def __init__(self, exchange: str, handlers: Mapping[str, RpcHandler]) -> None:
        if not handlers:
            raise ValueError(f"serve({exchange!r}) needs at least one handler")
        self.exchange = exchange
        self._exact: dict[str, RpcHandler] = {}
        self._patterns: list[tuple[str, RpcHandler]] = []
        for name, handler in handlers.items():
            method_key(name)  # validates the name
            if "*" in name.split(".") or "#" in name.split("."):
                self._patterns.append((name, handler))
            else:
                self._exact[name] = handler

    def binding_keys(self) -> list[str]:
        return [method_key(name) for name in (*self._exact, *(p for p, _ in self._patterns))]

    def find(self, method: str) -> RpcHandler | None:
        handler = self._exact.get(method)
        if handler is not None:
            return handler
        for pattern, candidate in self._patterns:
            if topic_matcher(pattern)(method):
                return candidate
        return None

    async def answer(self, routing_key: str, body: bytes) -> tuple[str, bytes]:
        """``(reply type, reply body)`` for one request; never raises for bad input."""
        method = routing_key.removeprefix(_METHOD_PREFIX)
        if not routing_key.startswith(_METHOD_PREFIX):
            return REPLY_ERROR, encode_error(
                f"routing key {routing_key!r} is not methods.<name>", "unknown_method"
            )
        handler = self.find(method)
        if handler is None:
            return REPLY_ERROR, encode_error(
                f"{self.exchange} has no method {method!r} here", "unknown_method"
            )
        try:
            params = decode_object(body, "params")
            if isinstance(handler, KeyedHandler):
                result = await handler.keyed(method, params)
            else:
                result = await handler(params)
            return REPLY_RESULT, encode_body(result)
        except RpcError as exc:
            return REPLY_ERROR, encode_error(exc.msg, exc.code)
        except (RejectedMessageError, msgspec.ValidationError, ValueError) as exc:
            return REPLY_ERROR, encode_error(str(exc) or type(exc).__name__, "bad_params")
        except Exception as exc:
            # Includes a handler that returned something other than an object.
            log.exception("%s %s failed", self.exchange, method)
            return REPLY_ERROR, encode_error(f"{type(exc).__name__}: {exc}", "failed")
