"""The dashboard's static files: vendored htmx and its SSE extension (with their licences),
the stylesheet and the small script that resumes the live stream.

Served from package data by name (a fixed list, so no path reaches the file system from a
URL), cached for an hour: they change only with an upgrade, which changes ``?v=``.
"""

from __future__ import annotations

from importlib import resources

from fastapi import APIRouter, HTTPException, status
from fastapi.responses import Response

router = APIRouter(include_in_schema=False)

FILES = {
    "htmx.min.js": "text/javascript",
    "htmx.LICENSE": "text/plain",
    "htmx-ext-sse.min.js": "text/javascript",
    "htmx-ext-sse.LICENSE": "text/plain",
    "dashboard.js": "text/javascript",
    "dashboard.css": "text/css",
}


@router.get("/static/{name}")
async def static(name: str) -> Response:
    media = FILES.get(name)
    if media is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no static file {name[:80]!r}")
    body = resources.files("hwfleet.web").joinpath("static", name).read_bytes()
    return Response(
        body,
        media_type=f"{media}; charset=utf-8",
        headers={"Cache-Control": "max-age=3600", "X-Content-Type-Options": "nosniff"},
    )
