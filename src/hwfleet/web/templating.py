"""Jinja2 templates (package data under ``templates/``), rendered with autoescaping.

:class:`Templates` is made once per app by the composition root and found through the
app's services, so nothing is loaded at import time. A request from htmx (``HX-Request``)
for a page that has a live fragment gets the fragment only (:func:`wants_fragment`).
"""

from __future__ import annotations

from datetime import UTC, datetime

import jinja2
from fastapi import Request
from fastapi.responses import HTMLResponse

from hwfleet import __version__
from hwfleet.api.deps import lookup
from hwfleet.protocol.status import describe


def ago(value: str | None) -> str:
    """``12 s ago`` for an ISO timestamp (the page shows the absolute time as a title)."""
    if not value:
        return "never"
    try:
        then = datetime.fromisoformat(value)
    except ValueError:
        return value
    if then.tzinfo is None:
        then = then.replace(tzinfo=UTC)
    seconds = int((datetime.now(UTC) - then).total_seconds())
    if seconds < 120:
        return f"{max(seconds, 0)} s ago"
    if seconds < 7200:
        return f"{seconds // 60} min ago"
    if seconds < 172800:
        return f"{seconds // 3600} h ago"
    return f"{seconds // 86400} d ago"


class Templates:
    """The dashboard's Jinja2 environment."""

    def __init__(self) -> None:
        self.env = jinja2.Environment(
            loader=jinja2.PackageLoader("hwfleet.web", "templates"),
            autoescape=True,
            undefined=jinja2.StrictUndefined,  # a misspelt variable fails loudly, in tests
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.env.filters["ago"] = ago
        self.env.filters["st_words"] = describe
        self.env.globals["version"] = __version__

    def render(self, name: str, **context: object) -> str:
        return self.env.get_template(name).render(**context)


def templates(request: Request) -> Templates:
    return lookup(request, Templates, "the dashboard is not running")


def wants_fragment(request: Request) -> bool:
    return bool(request.headers.get("hx-request")) and not request.headers.get("hx-boosted")


def render(request: Request, name: str, *, csrf: str = "", **context: object) -> HTMLResponse:
    """A page (or fragment) as an HTML response; ``csrf`` is the session's token, if any."""
    html = templates(request).render(name, request_path=request.url.path, csrf=csrf, **context)
    return HTMLResponse(html, headers=PAGE_HEADERS)


#: Scripts and styles only from this server (no inline script can run), no framing
#: (clickjacking), forms post only here, and no page reaches a cache or another site's logs.
PAGE_HEADERS = {
    "Cache-Control": "no-store",
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; "
    "img-src 'self'; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; "
    "form-action 'self'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}
