"""The web dashboard (DESIGN §16): server-rendered HTML, htmx and server-sent events.

:func:`routers` gives the composition root the dashboard's routes to pass to
:func:`~hwfleet.api.app.create_app` as ``extra_routers``; :class:`~hwfleet.web.auth.Sessions`
is provided to the app beside the API's services. Pages read through the API's services
(:mod:`hwfleet.api.services`), never the store.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fastapi import APIRouter, FastAPI

if TYPE_CHECKING:
    from hwfleet.store import Store


def routers() -> list[APIRouter]:
    """Every dashboard router (imported here, not at package import: no side effects)."""
    from hwfleet.web import actions, assets, auth, graphs, images, live, pages

    return [
        auth.router,
        assets.router,
        pages.router,
        actions.router,
        live.router,
        images.router,
        graphs.router,
    ]


def provide_to(app: FastAPI, operator_token: str, store: Store, *, session_idle: float) -> None:
    """Give the app the dashboard's sessions (kept in ``store``) and templates (beside the
    API's services)."""
    from hwfleet.api.deps import provide
    from hwfleet.web.auth import Sessions
    from hwfleet.web.templating import Templates

    provide(app, Sessions(operator_token, store, idle=session_idle), Templates())
