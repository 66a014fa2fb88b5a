"""A carrier-agnostic protocol session: calls out, dispatches in, correlates replies.

The same class serves a TLS stream (one line per message) and an AMQP carrier
(one message body per envelope): the carrier feeds each received frame to
:meth:`Session.handle` and provides the coroutine that sends one frame.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Generic

from hwfleet.protocol import envelope
from hwfleet.protocol.errors import (
    CallTimeoutError,
    FatalProtocolError,
    RemoteError,
    SessionClosedError,
)
from hwfleet.protocol.methods import Ctx, MethodRegistry

log = logging.getLogger(__name__)

Sender = Callable[[bytes], Awaitable[None]]


class Session(Generic[Ctx]):
    """One peer: ``call`` it, and let ``handle`` answer what it sends."""

    def __init__(
        self,
        send: Sender,
        registry: MethodRegistry[Ctx],
        ctx: Ctx,
        *,
        peer: str,
        default_timeout: float = 10.0,
        send_now: Callable[[bytes], None] | None = None,
    ) -> None:
        """``send_now``: writes one frame without waiting (a stream's buffer); with it the
        session can :meth:`begin` calls that many sessions then wait for together."""
        self._send = send
        self._send_now = send_now
        self._registry = registry
        self.ctx = ctx
        self.peer = peer
        self.default_timeout = default_timeout
        self._pending: dict[str, tuple[str, asyncio.Future[dict[str, Any]]]] = {}
        self._closed: BaseException | None = None

    @property
    def closed(self) -> bool:
        return self._closed is not None

    async def call(
        self, method: str, params: dict[str, Any] | None = None, timeout: float | None = None
    ) -> dict[str, Any]:
        """Send a command and wait for its result; raise on error reply, timeout or close."""
        if self._closed is not None:
            raise SessionClosedError(f"session to {self.peer} is closed: {self._closed}")
        cmd = envelope.command(method, params)
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[cmd.id] = (method, future)
        limit = self.default_timeout if timeout is None else timeout
        try:
            await self._send(envelope.encode(cmd))
            async with asyncio.timeout(limit):
                return await future
        except TimeoutError:
            raise CallTimeoutError(method, limit, self.peer) from None
        finally:
            self._pending.pop(cmd.id, None)

    @property
    def can_begin(self) -> bool:
        return self._send_now is not None

    def begin(
        self, method: str, params: dict[str, Any] | None = None
    ) -> tuple[str, asyncio.Future[dict[str, Any]]]:
        """Send a command now, without waiting: its id and the future of its result.

        For one deadline over many sessions (``ping --all`` of 10,000 devices): no task and
        no timer per call. The caller waits on the future and must :meth:`forget` the id.
        Raises :class:`SessionClosedError` when the session or its stream is closed.
        """
        if self._closed is not None:
            raise SessionClosedError(f"session to {self.peer} is closed: {self._closed}")
        if self._send_now is None:
            raise TypeError(f"the session to {self.peer} cannot send without waiting: call()")
        cmd = envelope.command(method, params)
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        try:
            self._send_now(envelope.encode(cmd))
        except (ConnectionError, OSError) as exc:
            raise SessionClosedError(f"{method} to {self.peer}: {exc}") from None
        self._pending[cmd.id] = (method, future)
        return cmd.id, future

    def forget(self, call_id: str) -> None:
        """Stop waiting for the reply to a :meth:`begin` call (answered or not)."""
        self._pending.pop(call_id, None)

    async def cast(self, method: str, params: dict[str, Any] | None = None) -> None:
        """Send a command without waiting for its reply (the reply is dropped on arrival)."""
        if self._closed is not None:
            raise SessionClosedError(f"session to {self.peer} is closed: {self._closed}")
        await self._send(envelope.encode(envelope.command(method, params)))

    async def handle(self, frame: bytes) -> bool:
        """Process one received frame; ``False`` means the carrier must close now."""
        try:
            message = envelope.decode(frame)
        except FatalProtocolError as exc:
            await self._fatal(str(exc))
            return False
        except envelope.BadEnvelopeError as exc:
            await self._reply(envelope.error(exc.message_id, exc.msg, exc.code))
            return True
        return await self.handle_message(message)

    async def handle_message(self, message: envelope.Message) -> bool:
        """Process an already-decoded message (carriers that route by message kind)."""
        if isinstance(message, envelope.Command):
            await self._reply(await self._registry.dispatch(self.ctx, message))
        elif isinstance(message, envelope.Result):
            self._resolve(message.id, message.result, None)
        elif isinstance(message, envelope.Error):
            self._resolve(message.id, None, message.error)
        else:
            log.warning("%s sent fatal_error: %s", self.peer, message.fatal_error)
            self.close(SessionClosedError(f"peer sent fatal_error: {message.fatal_error}"))
            return False
        return True

    async def fatal(self, reason: str, *, quiet: bool = False) -> None:
        """Tell the peer why the connection is about to close (``quiet``: logged at debug,
        for refusals the caller sums up itself)."""
        await self._fatal(reason, logging.DEBUG if quiet else logging.WARNING)

    def close(self, reason: BaseException | None = None) -> None:
        """Fail every pending call; later calls raise :class:`SessionClosedError`."""
        if self._closed is not None:
            return
        self._closed = reason or SessionClosedError(f"session to {self.peer} closed")
        for method, future in self._pending.values():
            if not future.done():
                future.set_exception(SessionClosedError(f"{method} to {self.peer}: {self._closed}"))
        self._pending.clear()

    def _resolve(
        self, message_id: str, value: dict[str, Any] | None, err: envelope.ErrorBody | None
    ) -> None:
        entry = self._pending.get(message_id)
        if entry is None:
            return  # a reply to a cast, or to a call that already timed out
        method, future = entry
        if future.done():
            return
        if err is not None:
            future.set_exception(RemoteError(method, err.msg, err.code))
        else:
            future.set_result(value or {})

    async def _reply(self, message: envelope.Message) -> None:
        try:
            await self._send(envelope.encode(message))
        except (ConnectionError, OSError) as exc:
            self.close(SessionClosedError(str(exc)))

    async def _fatal(self, reason: str, level: int = logging.WARNING) -> None:
        log.log(level, "closing session to %s: %s", self.peer, reason)
        with contextlib.suppress(ConnectionError, OSError):
            await self._send(envelope.encode(envelope.FatalError(fatal_error=reason)))
        self.close(SessionClosedError(reason))
