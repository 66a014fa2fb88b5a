"""``/docs``: Swagger UI served from this controller, never from a CDN.

Factory networks are often air-gapped, and FastAPI's default page loads its
JavaScript and CSS from a public CDN, which left ``/docs`` blank there. The
assets come from the ``swagger-ui-bundle-v2`` package (Swagger UI's own
distribution, Apache-2.0, its licence shipped alongside) and are served under
``/docs/assets``. The online validator badge is switched off: it would call out too.
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from starlette.staticfiles import StaticFiles

ASSETS = "/docs/assets"


def swagger_ui_dir() -> str:
    """The directory of the packaged Swagger UI distribution."""
    import swagger_ui_bundle  # type: ignore[import-untyped]

    path: str = swagger_ui_bundle.swagger_ui_path
    return path


def install(app: FastAPI) -> None:
    """Serve Swagger UI at ``/docs`` with local assets (create the app with ``docs_url=None``)."""
    app.mount(ASSETS, StaticFiles(directory=swagger_ui_dir()), name="swagger-ui-assets")

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "").rstrip("/")
        return get_swagger_ui_html(
            openapi_url=f"{root}{app.openapi_url}",
            title=f"{app.title} — API",
            swagger_js_url=f"{root}{ASSETS}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{ASSETS}/swagger-ui.css",
            swagger_favicon_url=f"{root}{ASSETS}/favicon-32x32.png",
            swagger_ui_parameters={"validatorUrl": None},
        )
