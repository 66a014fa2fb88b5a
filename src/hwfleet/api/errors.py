"""422 replies that name the field and the problem, and never echo the request.

FastAPI's default validation reply repeats each wrong value (``input``) — the whole
body for a body that is not an object, a password for a wrong password field, a
4 MB list for a list that is too long. This handler answers with one sentence in
``detail`` (what the CLI prints) and a short ``errors`` list of field and problem.
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

#: At most this many problems are listed; a problem's text is cut at this many characters.
MAX_ERRORS = 10
MAX_PROBLEM = 200


def field_name(loc: tuple[object, ...] | list[object]) -> str:
    """``("body", "params", "uuids", 3)`` → ``body.params.uuids[3]``."""
    name = ""
    for part in loc:
        name += f"[{part}]" if isinstance(part, int) else (f".{part}" if name else str(part))
    return name or "request"


def short_errors(exc: RequestValidationError) -> list[dict[str, str]]:
    return [
        {
            "field": field_name(tuple(e.get("loc", ()))),
            "problem": str(e.get("msg", ""))[:MAX_PROBLEM],
        }
        for e in exc.errors()[:MAX_ERRORS]
    ]


async def validation_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = short_errors(exc)
    total = len(exc.errors())
    first = errors[0] if errors else {"field": "request", "problem": "is not valid"}
    detail = f"{first['field']}: {first['problem']}"
    if total > 1:
        detail += f" (and {total - 1} more problem{'s' if total > 2 else ''})"
    return JSONResponse({"detail": detail, "errors": errors}, status_code=422)


def install(app: FastAPI) -> None:
    app.add_exception_handler(RequestValidationError, validation_error)
