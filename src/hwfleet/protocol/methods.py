"""Method names, their parameter shapes, and the registry both sides dispatch through."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Generic, TypeVar

import msgspec

from hwfleet._lazy import resolve
from hwfleet.protocol import envelope
from hwfleet.protocol.errors import ErrorCode, MethodError

log = logging.getLogger(__name__)

#: An unexpected exception's text is cut to this many characters in the error reply.
MAX_FAILURE_TEXT = 500

# Core protocol (seed 001).
HANDSHAKE = "handshake"
PING = "ping"
STATUS = "status"
LOG = "log"
TASK_STATUS = "task_status"
#: Controller → agent: stop a long task at its next safe point (it then reports
#: ``error`` "cancelled"). An hwfleet addition; both carriers carry it like any command.
TASK_CANCEL = "task_cancel"
# hwfleet additions on the same envelope.
INVENTORY = "inventory"
SCAN = "scan"
# Long commands (seed 001): accept at once, then report through task_status.
DECOM_DISK_ERASE = "decom.disk_erase"
DECOM_FIRMWARE_SECURE = "decom.firmware_secure"
DECOM_QC = "decom.qc"
STANDBY_CACHE_IMAGES = "standby.cache_images"
STANDBY_PREPARE_IMAGE = "standby.prepare_image"
STANDBY_RUN_IMAGE = "standby.run_image"
# Device management (seed 004): short commands answered at once.
DEVICE_RENAME = "device.rename"
DEVICE_SET_PASSWORD = "device.set_password"  # noqa: S105 - a method name, not a secret
DEVICE_TRUST_ADD = "device.trust.add"
DEVICE_TRUST_LIST = "device.trust.list"
DEVICE_TRUST_REMOVE = "device.trust.remove"
DEVICE_NETWORK_GET = "device.network.get"
DEVICE_NETWORK_SET = "device.network.set"
DEVICE_WIFI_LIST = "device.wifi.list"
DEVICE_MAINTENANCE = "device.maintenance"

#: Seed 001 spells the group ``standbye.``; both spellings reach the same handler.
_ALIASES = {"standbye.": "standby."}


def canonical(method: str) -> str:
    """Map an alias spelling to the canonical method name."""
    for alias, target in _ALIASES.items():
        if method.startswith(alias):
            return target + method[len(alias) :]
    return method


#: Seed 001's long commands: they take a task_id, accept at once, report via task_status.
LONG_METHODS = frozenset(
    {
        DECOM_DISK_ERASE,
        DECOM_FIRMWARE_SECURE,
        DECOM_QC,
        STANDBY_CACHE_IMAGES,
        STANDBY_PREPARE_IMAGE,
        STANDBY_RUN_IMAGE,
    }
)


def is_long(method: str) -> bool:
    """Whether a method is one of seed 001's long commands (tracked as a task)."""
    return canonical(method) in LONG_METHODS


class Handshake(msgspec.Struct, kw_only=True):
    """First message from an agent: who it is."""

    uuid: str
    serial: int | str
    name: str = ""
    model_id: str = ""
    version: str = ""
    macs: list[str] = msgspec.field(default_factory=list)
    st_id: int = 0
    #: Long tasks the agent is still running (so the controller can tell lost ones).
    tasks: list[str] = msgspec.field(default_factory=list)
    #: The agent's own address, for carriers that cannot see it (AMQP).
    ipaddr: str = ""


class LogParams(msgspec.Struct, kw_only=True):
    """A structured log line from an agent; ``level`` is one of the seed-003 levels."""

    level: str
    msg: str
    fields: dict[str, Any] = msgspec.field(default_factory=dict)


class TaskStatus(msgspec.Struct, kw_only=True):
    """Progress of a long command; nothing follows ``error`` or ``complete``."""

    task_id: str
    state: str
    percent: float | None = None
    eta: float | None = None
    msg: str | None = None
    result: dict[str, Any] | None = None
    #: The device's ``st_id`` as it sends the report (seed 004's status rule: 16 while a
    #: task runs, 64 once it completed, 128 after a failure); the controller keeps it on
    #: the device's row. Absent from agents before it was added.
    st_id: int | None = None

    def __post_init__(self) -> None:
        if self.state not in ("running", "error", "complete"):
            raise ValueError(f"state must be running, error or complete, not {self.state!r}")
        if self.percent is not None and not 0 <= self.percent <= 100:
            raise ValueError(f"percent must be between 0 and 100, not {self.percent}")
        if self.state == "error" and not self.msg:
            raise ValueError("an error state needs a 'msg'")
        if self.st_id is not None and not -(2**31) <= self.st_id < 2**31:
            raise ValueError(f"st_id must be a 32-bit status id, not {self.st_id}")


class TaskCancelParams(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    task_id: str


class TaskParams(msgspec.Struct, kw_only=True, forbid_unknown_fields=False):
    """Every long command takes a ``task_id``; other fields are the command's own."""

    task_id: str


LOG_LEVELS = ("emerg", "alert", "error", "warning", "notice", "info", "debug", "silly")

Ctx = TypeVar("Ctx")
Handler = Callable[[Ctx, Any], Awaitable[Any]]


# Structs, not dataclasses: msgspec is loaded anyway, and ``dataclasses`` (with ``copy``)
# would cost an idle agent about 0.15 MB for these two records (issue 18).
class _Entry(msgspec.Struct, Generic[Ctx], frozen=True):
    handler: Handler[Ctx]
    params: type[Any] | None


class _Deferred(msgspec.Struct, frozen=True):
    """A handler known by reference, imported on its first call (:meth:`MethodRegistry.defer`)."""

    handler: str
    params: str | None


class MethodRegistry(Generic[Ctx]):
    """Maps method names to handlers; turns every outcome into a reply envelope.

    A handler receives the session context and its params (converted to the
    registered struct, or the raw dict when none is registered) and returns a
    mapping or struct for ``result``. It raises :class:`MethodError` to answer
    with an error. Unknown methods and bad params are answered, never ignored,
    and so is any other exception a handler raises (DESIGN §3: always an error
    reply, never silence): the caller gets ``failed`` at once instead of waiting
    out its timeout, the link stays up, and the traceback goes to the log.
    """

    def __init__(self) -> None:
        self._entries: dict[str, _Entry[Ctx] | _Deferred] = {}

    def add(self, method: str, handler: Handler[Ctx], params: type[Any] | None = None) -> None:
        self._entries[canonical(method)] = _Entry(handler, params)

    def copy(self) -> MethodRegistry[Ctx]:
        """Another registry with the same methods, changed independently from then on."""
        other: MethodRegistry[Ctx] = MethodRegistry()
        other._entries = dict(self._entries)
        return other

    def defer(self, method: str, handler: str, params: str | None = None) -> None:
        """Register ``method`` by reference: ``"package.module:function"`` (and its params
        struct the same way), imported when the method is first called.

        The registry lists and accepts the method at once; a module that only some commands
        use (imaging, network settings) then never costs an idle agent memory (issue 18).
        """
        self._entries[canonical(method)] = _Deferred(handler, params)

    def load(self, method: str) -> tuple[Handler[Ctx], type[Any] | None]:
        """The handler of ``method`` and its params struct, importing a deferred one now.

        Raises ``KeyError`` for an unknown method, and what the import raises for a
        reference that names nothing.
        """
        name = canonical(method)
        entry = self._entries[name]
        if isinstance(entry, _Deferred):
            params = None if entry.params is None else resolve(entry.params)
            if params is not None and not isinstance(params, type):
                raise TypeError(f"{entry.params} is not a type (params of {name})")
            entry = _Entry(resolve(entry.handler), params)
            self._entries[name] = entry
        return entry.handler, entry.params

    def method(
        self, name: str, params: type[Any] | None = None
    ) -> Callable[[Handler[Ctx]], Handler[Ctx]]:
        """Decorator form of :meth:`add`."""

        def register(handler: Handler[Ctx]) -> Handler[Ctx]:
            self.add(name, handler, params)
            return handler

        return register

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, method: str) -> bool:
        return canonical(method) in self._entries

    async def dispatch(self, ctx: Ctx, cmd: envelope.Command) -> envelope.Result | envelope.Error:
        if cmd.method not in self:
            return envelope.error(
                cmd.id, f"unknown method {cmd.method!r}", ErrorCode.UNKNOWN_METHOD
            )
        try:
            handler, struct = self.load(cmd.method)
        except Exception as exc:  # a deferred module that fails to import: answered, logged
            log.exception("%s could not be loaded", cmd.method)
            return envelope.error(cmd.id, failure_text(cmd.method, exc), ErrorCode.FAILED)
        if struct is None:
            params: Any = cmd.params
        else:
            try:
                params = msgspec.convert(cmd.params, struct)
            except (msgspec.ValidationError, ValueError, TypeError) as exc:
                return envelope.error(
                    cmd.id, f"bad params for {cmd.method}: {exc}", ErrorCode.BAD_PARAMS
                )
        try:
            return envelope.result(cmd.id, to_object(await handler(ctx, params)))
        except MethodError as exc:
            return envelope.error(cmd.id, exc.msg, exc.code)
        except Exception as exc:  # cancellation (BaseException) still ends the handler
            log.exception("%s failed", cmd.method)
            return envelope.error(cmd.id, failure_text(cmd.method, exc), ErrorCode.FAILED)


def failure_text(method: str, exc: Exception) -> str:
    """``<method> failed: <type>: <text>`` for an exception no handler expected.

    Only the first line of the text goes out, cut short: database errors append the
    statement and its parameters on later lines, which are for the log, not the peer.
    """
    text = str(exc).split("\n", 1)[0]
    if len(text) > MAX_FAILURE_TEXT:
        text = text[:MAX_FAILURE_TEXT] + "…"
    return f"{method} failed: {type(exc).__name__}: {text}"


def to_object(value: Any) -> dict[str, Any]:
    """Turn a handler's return value into a JSON object for ``result``."""
    if value is None:
        return {}
    if isinstance(value, Mapping):
        return dict(value)
    built = msgspec.to_builtins(value)
    if not isinstance(built, dict):
        raise TypeError(f"a result must be an object, not {type(built).__name__}")
    return built
