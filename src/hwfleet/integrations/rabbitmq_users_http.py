"""Device users through RabbitMQ's management HTTP API (``--bus-credentials http(s)://…``).

For a broker on another machine (or many enrollments: one HTTP request each
instead of a ``rabbitmqctl`` process). The controller needs a broker user
with the ``administrator`` tag for ``/api/users``; it is taken from the URL's
user info, or else from the bus URL.

    PUT    /api/users/{user}                       {"password": …, "tags": ""}
    PUT    /api/permissions/{vhost}/{user}         {"configure", "write", "read"}
    PUT    /api/topic-permissions/{vhost}/{user}   {"exchange", "write", "read"}  (per exchange)
    DELETE /api/users/{user}                       (RabbitMQ closes the user's connections)

Passwords travel only in request bodies (use https when the broker is remote);
error messages carry the status and the broker's reason, never a body we sent.
"""

from __future__ import annotations

from urllib.parse import quote, unquote, urlsplit, urlunsplit

import httpx

from hwfleet.bus.topology import DEFAULT_PREFIX
from hwfleet.integrations.rabbitmq_users import (
    BusCredentialsError,
    Credentials,
    Grants,
    Provisioner,
)


def _path(*parts: str) -> str:
    return "/api/" + "/".join(quote(part, safe="") for part in parts)


class ManagementApiProvisioner(Provisioner):
    """Device users through ``/api/users``, ``/api/permissions``, ``/api/topic-permissions``."""

    def __init__(
        self,
        base_url: str,
        vhost: str,
        *,
        auth: tuple[str, str],
        prefix: str = DEFAULT_PREFIX,
        transport: httpx.AsyncBaseTransport | None = None,
        timeout: float = 10.0,
    ) -> None:
        super().__init__(vhost, prefix=prefix)
        self.base_url = base_url.rstrip("/")
        self._auth = auth
        self._transport = transport
        self._timeout = timeout

    @classmethod
    def from_urls(
        cls, api_url: str, bus_url: str, vhost: str, *, prefix: str = DEFAULT_PREFIX
    ) -> ManagementApiProvisioner:
        """From ``--bus-credentials URL``; admin credentials from it or from the bus URL."""
        api, bus = urlsplit(api_url), urlsplit(bus_url)
        source = api if api.username else bus
        auth = (unquote(source.username or "guest"), unquote(source.password or "guest"))
        host = api.hostname or "localhost"
        netloc = f"[{host}]" if ":" in host else host
        if api.port:
            netloc += f":{api.port}"
        base = urlunsplit((api.scheme, netloc, api.path.rstrip("/"), "", ""))
        return cls(base, vhost, auth=auth, prefix=prefix)

    def _client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            base_url=self.base_url,
            auth=self._auth,
            transport=self._transport,
            timeout=self._timeout,
            headers={"content-type": "application/json"},
        )

    @staticmethod
    def _raise_for(response: httpx.Response, what: str) -> None:
        if response.is_success:
            return
        try:
            reason = str(response.json().get("reason", ""))[:300]
        except ValueError:
            reason = response.text[:300]
        raise BusCredentialsError(
            f"RabbitMQ management API: {what} failed with HTTP {response.status_code}"
            + (f": {reason}" if reason else "")
        )

    async def _send(
        self, client: httpx.AsyncClient, method: str, path: str, body: object, what: str
    ) -> httpx.Response:
        try:
            response = await client.request(method, path, json=body)
        except httpx.HTTPError as exc:
            # Name the API and the step only: the exception text may quote the request.
            raise BusCredentialsError(
                f"RabbitMQ management API at {self.base_url}: {what} failed: {type(exc).__name__}"
            ) from None
        return response

    async def set_policy(self, name: str, pattern: str, definition: dict[str, object]) -> None:
        """``PUT /api/policies/{vhost}/{name}`` on queues (see rabbitmq_policy)."""
        body = {"pattern": pattern, "definition": definition, "priority": 0, "apply-to": "queues"}
        async with self._client() as client:
            what = f"setting policy {name}"
            response = await self._send(
                client, "PUT", _path("policies", self.vhost, name), body, what
            )
            self._raise_for(response, what)

    async def _create(self, credentials: Credentials, grants: Grants) -> None:
        user = credentials.username
        async with self._client() as client:
            response = await self._send(
                client,
                "PUT",
                _path("users", user),
                {"password": credentials.password, "tags": ""},
                f"creating user {user}",
            )
            self._raise_for(response, f"creating user {user}")
            permissions = {
                "configure": grants.configure,
                "write": grants.write,
                "read": grants.read,
            }
            response = await self._send(
                client,
                "PUT",
                _path("permissions", self.vhost, user),
                permissions,
                f"setting the permissions of {user}",
            )
            self._raise_for(response, f"setting the permissions of {user}")
            for exchange, write, read in grants.topics:
                what = f"setting the topic permissions of {user} on {exchange}"
                response = await self._send(
                    client,
                    "PUT",
                    _path("topic-permissions", self.vhost, user),
                    {"exchange": exchange, "write": write, "read": read},
                    what,
                )
                self._raise_for(response, what)

    async def _delete(self, username: str) -> bool:
        async with self._client() as client:
            response = await self._send(
                client, "DELETE", _path("users", username), None, f"deleting user {username}"
            )
        if response.status_code == 404:
            return False
        self._raise_for(response, f"deleting user {username}")
        return True
