"""What the REST API needs from the controller, as protocols the controller's parts satisfy.

The API never imports the controller: the composition root (``hwfleet.controller.app``)
builds the API's services from its parts and hands them in, and mypy checks here that
those parts fit. Each protocol names only the calls the API makes.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any, Protocol

from hwfleet.bus.base import Bus
from hwfleet.discovery.browser import DiscoveryBrowser
from hwfleet.store import ScanRecord, Store, TaskRecord
from hwfleet.trust.keyadmin import KeyAdmin
from hwfleet.types import JsonObject


class DeviceLinks(Protocol):
    """The connected devices: who is reachable, and calls to them."""

    def stale_before(self) -> datetime: ...

    def get(self, uuid: str) -> object | None:
        """The device's connection to this replica, if it has one."""
        ...

    async def reachable(self, uuid: str) -> bool: ...

    async def online_now(self) -> list[str]: ...

    async def ping_many(
        self, uuids: Iterable[str], timeout: float | None = None
    ) -> dict[str, dict[str, Any]]: ...

    async def call(
        self,
        uuid: str,
        method: str,
        params: dict[str, Any] | None = None,
        timeout: float | None = None,
    ) -> dict[str, Any]: ...


class TaskControl(Protocol):
    """Long commands: start one, wait for one to end, cancel one."""

    async def start(self, uuid: str, method: str, params: dict[str, Any]) -> TaskRecord: ...

    async def wait(self, task_id: str, timeout: float) -> TaskRecord | None: ...

    async def cancel(self, record: TaskRecord) -> TaskRecord: ...


class ScanControl(Protocol):
    """Burn-in scans: start one (raises :class:`~hwfleet.errors.ScanRunningError`)."""

    async def start(
        self, expected: list[JsonObject] | None = None, *, quiet_timeout: float | None = None
    ) -> ScanRecord: ...

    def mes_post_keys(self, scan: ScanRecord) -> list[str]: ...


class EventSink(Protocol):
    """Records an event and publishes it on the ``events`` exchange."""

    async def emit(
        self, routing_key: str, payload: dict[str, Any], *, device_uuid: str | None = None
    ) -> None: ...


class ControllerParts(Protocol):
    """The parts of a running controller the API's services are built from."""

    @property
    def store(self) -> Store: ...

    @property
    def bus(self) -> Bus: ...

    @property
    def devices(self) -> DeviceLinks: ...

    @property
    def tasks(self) -> TaskControl: ...

    @property
    def scans(self) -> ScanControl: ...

    @property
    def events(self) -> EventSink: ...

    @property
    def keys(self) -> KeyAdmin: ...

    @property
    def discovery(self) -> DiscoveryBrowser: ...
