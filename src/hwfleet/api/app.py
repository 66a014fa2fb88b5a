"""The FastAPI application: routers, the operator token, OpenAPI at /docs."""

from __future__ import annotations

from fastapi import APIRouter, FastAPI

from hwfleet import __version__
from hwfleet.api import (
    boot,
    device_admin,
    devices,
    discovery,
    docs,
    errors,
    events,
    graphs,
    images,
    keys,
    lifecycle,
    mdp,
    oob,
    retention,
    scans,
    targets,
    tasks,
)
from hwfleet.api.deps import ApiServices, provide_all
from hwfleet.api.limits import DEFAULT_MAX_BODY, RequestGuard


def create_app(
    services: ApiServices,
    operator_token: str,
    extra_routers: list[APIRouter] | None = None,
    *,
    max_body: int = DEFAULT_MAX_BODY,
) -> FastAPI:
    """The API over these services (:meth:`ApiServices.build` makes them from a controller).

    ``max_body``: no request body may be larger (the ``api_max_body`` setting).
    """
    app = FastAPI(
        title="hwfleet controller",
        version=__version__,
        description="Control plane for fleets of physical machines. Every /api/v1 route needs "
        "`Authorization: Bearer <operator token>`.",
        docs_url=None,  # served by hwfleet.api.docs from local assets
        redoc_url=None,  # ReDoc loads from a CDN and has no local copy
    )
    provide_all(app, services)
    app.state.operator_token = operator_token
    app.add_middleware(RequestGuard, token=operator_token, max_body=max_body)
    errors.install(app)
    docs.install(app)
    for module in (
        devices,
        device_admin,
        discovery,
        events,
        graphs,
        images,
        keys,
        scans,
        tasks,
        targets,
        lifecycle,
        boot,
        mdp,
        oob,
        retention,
    ):
        app.include_router(module.router)
    app.include_router(boot.boot_router)  # machines booting: no operator token (api/boot.py)
    app.include_router(graphs.node_router)  # the bootstrap pair: a node's own credential too
    for router in extra_routers or []:
        app.include_router(router)

    @app.get("/healthz", tags=["health"])
    async def healthz() -> dict[str, str]:
        """Unauthenticated liveness: says nothing about the fleet."""
        return {"status": "ok"}

    return app
