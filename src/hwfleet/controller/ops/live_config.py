"""Live settings: read and changed over the bus (``configuration`` methods.get / methods.set).

Values are validated against their type, persisted in the store, applied at
once by the part that owns them, and survive a controller restart.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from hwfleet.controller.events import EventPublisher, utcnow
from hwfleet.errors import ConfigError
from hwfleet.types import JsonObject

if TYPE_CHECKING:
    from hwfleet.bus.base import Bus, Subscription
    from hwfleet.store import Store

log = logging.getLogger(__name__)

LOG_LEVELS = ("debug", "info", "warning", "error", "critical")


@dataclass(frozen=True, slots=True)
class Setting:
    key: str
    kind: type
    default: Any
    check: Callable[[Any], str | None] = lambda _value: None
    description: str = ""


def _positive(value: Any) -> str | None:
    return None if value > 0 else "must be greater than 0"


def _log_level(value: Any) -> str | None:
    return None if value in LOG_LEVELS else f"must be one of {', '.join(LOG_LEVELS)}"


class LiveConfigError(ConfigError, ValueError):
    pass


class LiveConfig:
    """Typed live settings with change listeners."""

    def __init__(self, store: Store, events: EventPublisher, settings: list[Setting]) -> None:
        self._store = store
        self._events = events
        self._defs = {s.key: s for s in settings}
        self._values = {s.key: s.default for s in settings}
        self._listeners: dict[str, list[Callable[[Any], None]]] = {}
        self._subscription: Subscription | None = None

    async def load(self) -> None:
        async with self._store.tx() as tx:
            stored = await tx.config.all()
        for key, value in stored.items():
            if key in self._defs:
                try:
                    self._values[key] = self._validate(key, value)
                except LiveConfigError as exc:
                    log.warning("ignoring stored setting: %s", exc)
        for key, value in self._values.items():
            self._notify(key, value)

    def get(self, key: str) -> Any:
        if key not in self._defs:
            raise LiveConfigError(
                f"unknown setting {key!r} (known: {', '.join(sorted(self._defs))})"
            )
        return self._values[key]

    def all(self) -> dict[str, Any]:
        return dict(self._values)

    def on_change(self, key: str, listener: Callable[[Any], None]) -> None:
        self._listeners.setdefault(key, []).append(listener)

    async def set(self, key: str, value: Any) -> Any:
        checked = self._validate(key, value)
        async with self._store.tx() as tx:
            await tx.config.set(key, checked, utcnow())
        self._values[key] = checked
        self._notify(key, checked)
        await self._events.emit("configuration.changed", {"key": key, "value": checked})
        return checked

    async def serve(self, bus: Bus) -> None:
        self._subscription = await bus.serve(
            "configuration", {"get": self._rpc_get, "set": self._rpc_set}
        )

    async def close(self) -> None:
        if self._subscription is not None:
            await self._subscription.cancel()

    async def _rpc_get(self, params: JsonObject) -> JsonObject:
        key = params.get("key")
        if key is None:
            return {"settings": self.all()}
        if not isinstance(key, str):
            raise LiveConfigError("'key' must be a string")
        return {"key": key, "value": self.get(key)}

    async def _rpc_set(self, params: JsonObject) -> JsonObject:
        key = params.get("key")
        if not isinstance(key, str) or "value" not in params:
            raise LiveConfigError("methods.set needs {'key': str, 'value': ...}")
        return {"key": key, "value": await self.set(key, params["value"])}

    def _validate(self, key: str, value: Any) -> Any:
        spec = self._defs.get(key)
        if spec is None:
            raise LiveConfigError(
                f"unknown setting {key!r} (known: {', '.join(sorted(self._defs))})"
            )
        if spec.kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, spec.kind) or isinstance(value, bool) != (spec.kind is bool):
            raise LiveConfigError(f"{key} must be {spec.kind.__name__}, not {type(value).__name__}")
        problem = spec.check(value)
        if problem:
            raise LiveConfigError(f"{key} {problem}")
        return value

    def _notify(self, key: str, value: Any) -> None:
        for listener in self._listeners.get(key, []):
            listener(value)


def default_settings(scan_quiet_timeout: float, log_level: str) -> list[Setting]:
    return [
        Setting("log_level", str, log_level, _log_level, "controller log level"),
        Setting(
            "scan.quiet_timeout",
            float,
            scan_quiet_timeout,
            _positive,
            "seconds without a reply after which a scan completes",
        ),
    ]
