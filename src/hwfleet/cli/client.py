"""The operator commands' HTTP client: finds the API and token, turns failures into fixes.

httpx is imported when a client is made, not with this module: every command
module imports this one, and the agent must not pay for an HTTP client.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode, urlsplit

# CliError lives in hwfleet.errors so the agent process can raise it without this module.
from hwfleet.errors import CliError as CliError
from hwfleet.types import default_data_dir

if TYPE_CHECKING:
    import httpx

DEFAULT_API = "http://127.0.0.1:8780"


def resolve_api(api: str | None) -> str:
    """The API base URL from ``--api``, else ``HWFLEET_API``, else the default; checked here
    so that a missing scheme is one line naming where it was set, not an httpx traceback."""
    env = os.environ.get("HWFLEET_API")
    value, where = (api, "--api") if api else (env, "HWFLEET_API") if env else (DEFAULT_API, "")
    assert value is not None
    parts = urlsplit(value.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise CliError(
            f"{where} = {value!r} is not an http:// or https:// URL with a host — "
            f"set --api or HWFLEET_API like {DEFAULT_API}"
        )
    try:
        parts.port  # noqa: B018 - raises ValueError for a port out of range
    except ValueError as exc:
        raise CliError(f"{where} = {value!r}: {exc} — set --api or HWFLEET_API") from None
    return value.strip().rstrip("/")


def resolve_token(data_dir: str | None = None) -> str:
    token = os.environ.get("HWFLEET_TOKEN")
    if token:
        return token.strip()
    path = Path(data_dir or os.environ.get("HWFLEET_DATA_DIR") or default_data_dir())
    try:
        return (path / "operator.token").read_text(encoding="ascii").strip()
    except FileNotFoundError:
        raise CliError(
            f"no operator token: set HWFLEET_TOKEN or --data-dir (looked in {path}/operator.token)"
        ) from None


class ApiClient:
    """Synchronous client: the CLI is short-lived and one request at a time is enough."""

    def __init__(self, api: str | None = None, data_dir: str | None = None, timeout: float = 30.0):
        self.base = resolve_api(api)
        self._timeout = timeout
        self._headers = {"Authorization": f"Bearer {resolve_token(data_dir)}"}
        self._client: httpx.Client | None = None

    @property
    def _http(self) -> httpx.Client:
        """httpx, made on first use: importing it costs ~0.3 s of CPU (issue 18), so plain
        JSON requests over http:// go through the standard library instead."""
        if self._client is None:
            import httpx

            self._client = httpx.Client(
                base_url=self.base, timeout=self._timeout, headers=self._headers
            )
        return self._client

    def __enter__(self) -> ApiClient:
        return self

    def __exit__(self, *_: object) -> None:
        if self._client is not None:
            self._client.close()

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        plain = _plain_request(kwargs) if self.base.startswith("http://") else None
        if plain is not None:
            status, content = self._send_plain(method, path, *plain)
        else:
            status, content = self._send_httpx(method, path, kwargs)
        if status == 401:
            raise CliError("the controller refused the operator token: check HWFLEET_TOKEN")
        if status >= 400:
            text = content.decode("utf-8", "replace")
            try:
                detail = json.loads(content).get("detail", text)
            except (ValueError, AttributeError):
                detail = text
            raise CliError(f"{method} {path}: {status}: {detail}")
        return json.loads(content) if content else None

    def _refused(self) -> CliError:
        return CliError(
            f"the controller API at {self.base} refused the connection — is `hwfleet server` "
            "running? set --api or HWFLEET_API"
        )

    def _late(self) -> CliError:
        return CliError(f"the controller API at {self.base} did not answer in time")

    def _send_httpx(self, method: str, path: str, kwargs: dict[str, Any]) -> tuple[int, bytes]:
        import httpx

        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.ConnectError:
            raise self._refused() from None
        except httpx.TimeoutException:
            raise self._late() from None
        return response.status_code, response.content

    def _send_plain(
        self, method: str, path: str, query: str, body: bytes | None
    ) -> tuple[int, bytes]:
        import http.client

        parts = urlsplit(self.base)
        target = parts.path.rstrip("/") + path + (f"?{query}" if query else "")
        headers = dict(self._headers)
        if body is not None:
            headers["Content-Type"] = "application/json"
        conn = http.client.HTTPConnection(
            parts.hostname or "", parts.port or 80, timeout=self._timeout
        )
        try:
            conn.request(method, target, body=body, headers=headers)
            response = conn.getresponse()
            return response.status, response.read()
        except TimeoutError:
            raise self._late() from None
        except OSError:
            raise self._refused() from None
        finally:
            conn.close()

    def get(self, path: str, **kwargs: Any) -> Any:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> Any:
        return self.request("POST", path, **kwargs)

    def delete(self, path: str, **kwargs: Any) -> Any:
        return self.request("DELETE", path, **kwargs)


_Scalar = str | int | float | bool


def _plain_request(kwargs: dict[str, Any]) -> tuple[str, bytes | None] | None:
    """``(query, body)`` when the request is simple enough for the standard library, else None."""
    if not set(kwargs) <= {"params", "json"}:
        return None
    pairs: list[tuple[str, str]] = []
    for key, value in (kwargs.get("params") or {}).items():
        for item in value if isinstance(value, list | tuple) else [value]:
            if not isinstance(item, _Scalar):
                return None
            # As httpx encodes them: booleans lower-case.
            pairs.append((key, str(item).lower() if isinstance(item, bool) else str(item)))
    body = None
    if "json" in kwargs:
        body = json.dumps(kwargs["json"]).encode()
    return urlencode(pairs), body
