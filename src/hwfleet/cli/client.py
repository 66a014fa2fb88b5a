"""The operator commands' HTTP client: finds the API and token, turns failures into fixes.

httpx is imported when a client is made, not with this module: every command
module imports this one, and the agent must not pay for an HTTP client.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from hwfleet.errors import HwfleetError
from hwfleet.settings import default_data_dir

if TYPE_CHECKING:
    import httpx

DEFAULT_API = "http://127.0.0.1:8780"


class CliError(HwfleetError):
    """A failure to show the operator as one line that names the fix (exit code 1)."""


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
        import httpx

        self.base = resolve_api(api)
        self._http: httpx.Client = httpx.Client(
            base_url=self.base,
            timeout=timeout,
            headers={"Authorization": f"Bearer {resolve_token(data_dir)}"},
        )

    def __enter__(self) -> ApiClient:
        return self

    def __exit__(self, *_: object) -> None:
        self._http.close()

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        import httpx

        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.ConnectError:
            raise CliError(
                f"the controller API at {self.base} refused the connection — is `hwfleet server` "
                "running? set --api or HWFLEET_API"
            ) from None
        except httpx.TimeoutException:
            raise CliError(f"the controller API at {self.base} did not answer in time") from None
        if response.status_code == 401:
            raise CliError("the controller refused the operator token: check HWFLEET_TOKEN")
        if response.status_code >= 400:
            try:
                detail = response.json().get("detail", response.text)
            except ValueError:
                detail = response.text
            raise CliError(f"{method} {path}: {response.status_code}: {detail}")
        return response.json() if response.content else None

    def get(self, path: str, **kwargs: Any) -> Any:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> Any:
        return self.request("POST", path, **kwargs)

    def delete(self, path: str, **kwargs: Any) -> Any:
        return self.request("DELETE", path, **kwargs)
