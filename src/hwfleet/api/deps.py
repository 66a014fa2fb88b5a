"""Typed services for the routers, through FastAPI dependencies.

The composition root builds :class:`ApiServices` from the controller's parts and
:func:`create_app <hwfleet.api.app.create_app>` hands them to :func:`provide`; a router
mounted alone (a test) is given just the services it uses. A handler asks for one by type
(``devices: DevicesDep``) and gets a 503 naming it if the server has none.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Annotated, TypeVar

from fastapi import Depends, FastAPI, HTTPException, Request, status

from hwfleet.api.ports import ControllerParts
from hwfleet.api.services.devices import DevicesService
from hwfleet.api.services.events import EventsService
from hwfleet.api.services.scans import ScansService
from hwfleet.api.services.tasks import TasksService
from hwfleet.boot.service import BootService
from hwfleet.discovery.browser import DiscoveryBrowser
from hwfleet.trust.keyadmin import KeyAdmin

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class ApiServices:
    """Every service the routers use."""

    devices: DevicesService
    tasks: TasksService
    scans: ScansService
    events: EventsService
    keys: KeyAdmin
    discovery: DiscoveryBrowser | None
    # --- boot ---
    boot: BootService | None = None

    @classmethod
    def build(cls, parts: ControllerParts) -> ApiServices:
        return cls(
            devices=DevicesService(parts.store, parts.devices, parts.tasks),
            tasks=TasksService(parts.store, parts.tasks),
            scans=ScansService(parts.store, parts.scans),
            events=EventsService(parts.store, parts.bus, parts.events),
            keys=parts.keys,
            discovery=parts.discovery,
            boot=getattr(parts, "boot", None),
        )


def provide(app: FastAPI, *services: object) -> None:
    """Make these services available to the app's routers (``None`` entries are skipped)."""
    known: list[object] = list(getattr(app.state, "services", []))
    app.state.services = known + [s for s in services if s is not None]


def provide_all(app: FastAPI, services: ApiServices) -> None:
    provide(app, *(getattr(services, f.name) for f in fields(services)))


def lookup(request: Request, kind: type[T], unavailable: str) -> T:
    """The app's service of this type, or a 503 saying ``unavailable``."""
    for service in getattr(request.app.state, "services", ()):
        if isinstance(service, kind):
            return service
    raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, unavailable)


def devices_service(request: Request) -> DevicesService:
    return lookup(request, DevicesService, "the devices service is not running")


def tasks_service(request: Request) -> TasksService:
    return lookup(request, TasksService, "the tasks service is not running")


def scans_service(request: Request) -> ScansService:
    return lookup(request, ScansService, "the scans service is not running")


def events_service(request: Request) -> EventsService:
    return lookup(request, EventsService, "the events service is not running")


def key_admin(request: Request) -> KeyAdmin:
    return lookup(request, KeyAdmin, "key administration is not running")


def discovery_browser(request: Request) -> DiscoveryBrowser:
    return lookup(request, DiscoveryBrowser, "discovery is not running")


DevicesDep = Annotated[DevicesService, Depends(devices_service)]
TasksDep = Annotated[TasksService, Depends(tasks_service)]
ScansDep = Annotated[ScansService, Depends(scans_service)]
EventsDep = Annotated[EventsService, Depends(events_service)]
KeysDep = Annotated[KeyAdmin, Depends(key_admin)]
DiscoveryDep = Annotated[DiscoveryBrowser, Depends(discovery_browser)]
