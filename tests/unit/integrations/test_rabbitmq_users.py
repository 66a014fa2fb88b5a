"""Per-device RabbitMQ users: the permissions, the settings, and the management-API provisioner.

The management plugin is not enabled on the test broker, so the HTTP
provisioner runs against a fake API (httpx.MockTransport) that records what
it was asked and answers as RabbitMQ does.
"""

from __future__ import annotations

import base64
import json
import re
from typing import Any

import httpx
import pytest

from hwfleet.integrations.rabbitmq_users import (
    BusCredentialsError,
    Credentials,
    build_provisioner,
    grants,
    vhost_of,
)
from hwfleet.integrations.rabbitmq_users_http import ManagementApiProvisioner
from hwfleet.protocol.carrier import device_of_user, device_user

DEVICE = "3f2a0000-0000-4000-8000-000000000001"
OTHER = "3f2a0000-0000-4000-8000-000000000002"


def test_grants_cover_only_the_devices_own_resources() -> None:
    g = grants(DEVICE)

    def allowed(pattern: str, name: str) -> bool:
        return re.search(pattern, name) is not None

    own = [f"hwfleet.agent.{DEVICE}", f"hwfleet.agent.{DEVICE}.scan"]
    for name in own:
        assert allowed(g.configure, name) and allowed(g.write, name) and allowed(g.read, name)
    for name in [
        f"hwfleet.agent.{OTHER}",
        f"hwfleet.agent.{DEVICE}x",
        f"xhwfleet.agent.{DEVICE}",
        "hwfleet.agent.inbound",
        "hwinfo_queue",
        "amq.default",
        "hwfleet.agents",
        "hwfleet.dead-letter",
    ]:
        assert not allowed(g.configure, name), name
    assert allowed(g.write, "hwfleet.uplink")
    for name in ["amq.default", "hwfleet.agents", "hwfleet.controllers", "hwinfo_queue"]:
        assert not allowed(g.write, name), name
    assert allowed(g.read, "hwfleet.agents") and allowed(g.read, "devicescan")
    assert not allowed(g.read, "hwfleet.agent.inbound") and not allowed(g.read, "hwfleet.uplink")
    topics = {exchange: (write, read) for exchange, write, read in g.topics}
    write, _ = topics["hwfleet.uplink"]
    assert allowed(write, f"{DEVICE}.inbound") and allowed(write, f"{DEVICE}.reply.r1")
    assert not allowed(write, f"{OTHER}.inbound") and not allowed(write, DEVICE)
    _, read = topics["hwfleet.agents"]
    assert allowed(read, DEVICE) and not allowed(read, OTHER) and not allowed(read, "#")
    # Another prefix moves every name.
    assert "lab2\\.uplink" in grants(DEVICE, "lab2.").write


def test_user_names_and_vhosts() -> None:
    assert device_user(DEVICE) == f"hwfleet-device-{DEVICE}"
    assert device_of_user(device_user(DEVICE.upper())) == DEVICE
    assert device_of_user("guest") is None and device_of_user(None) is None
    assert device_of_user("hwfleet-device-nope") is None
    assert vhost_of("amqp://u:p@h:5672/") == "/" and vhost_of("amqp://h") == "/"
    assert vhost_of("amqp://h/%2F") == "/" and vhost_of("amqp://h/lab") == "lab"


def test_credentials_hide_the_password() -> None:
    creds = Credentials(device_user(DEVICE), "s3cr3t-value")
    assert "s3cr3t" not in repr(creds) and "s3cr3t" not in str(creds) and "s3cr3t" not in f"{creds}"
    username, password = creds
    assert (username, password) == (device_user(DEVICE), "s3cr3t-value")


def test_the_setting_picks_the_provisioner() -> None:
    assert build_provisioner("", "amqp://guest:guest@h/") is None
    with pytest.raises(ValueError, match="RabbitMQ bus"):
        build_provisioner("rabbitmqctl", "memory://")
    with pytest.raises(ValueError, match="must be empty"):
        build_provisioner("ldap", "amqp://h/")
    api = build_provisioner("https://admin:pw@mq.example:15671/", "amqp://guest:guest@h/lab")
    assert isinstance(api, ManagementApiProvisioner)
    assert api.base_url == "https://mq.example:15671" and api.vhost == "lab"
    assert api._auth == ("admin", "pw")
    # Without user info the bus URL's user logs in.
    api = build_provisioner("http://mq.example:15672", "amqp://ops:o%40ps@h/")
    assert isinstance(api, ManagementApiProvisioner) and api._auth == ("ops", "o@ps")


class FakeApi:
    """Enough of RabbitMQ's management API: users, permissions, topic permissions."""

    def __init__(self, *, fail: str | None = None) -> None:
        self.users: dict[str, dict[str, Any]] = {}
        self.permissions: dict[tuple[str, str], dict[str, Any]] = {}
        self.topics: dict[tuple[str, str, str], dict[str, Any]] = {}
        self.requests: list[tuple[str, str, Any]] = []
        self.fail = fail

    def __call__(self, request: httpx.Request) -> httpx.Response:
        auth = base64.b64decode(request.headers["authorization"].split()[1]).decode()
        if auth != "admin:adminpw":
            return httpx.Response(401, json={"error": "not_authorised", "reason": "Login failed"})
        path = request.url.raw_path.decode()
        body = json.loads(request.content) if request.content else None
        self.requests.append((request.method, path, body))
        if self.fail and self.fail in path:
            return httpx.Response(400, json={"error": "bad_request", "reason": "no such vhost"})
        parts = path.split("/")  # '', 'api', kind, ...
        kind = parts[2]
        if kind == "users" and request.method == "PUT":
            created = parts[3] not in self.users
            self.users[parts[3]] = body
            return httpx.Response(201 if created else 204)
        if kind == "users" and request.method == "DELETE":
            if self.users.pop(parts[3], None) is None:
                return httpx.Response(404, json={"error": "Object Not Found"})
            return httpx.Response(204)
        if kind == "permissions":
            self.permissions[(parts[3], parts[4])] = body
            return httpx.Response(201)
        if kind == "topic-permissions":
            self.topics[(parts[3], parts[4], body["exchange"])] = body
            return httpx.Response(201)
        return httpx.Response(404)


def provisioner(api: FakeApi, vhost: str = "/") -> ManagementApiProvisioner:
    return ManagementApiProvisioner(
        "http://mq.test:15672",
        vhost,
        auth=("admin", "adminpw"),
        transport=httpx.MockTransport(api),
    )


async def test_management_api_creates_a_limited_user() -> None:
    api = FakeApi()
    creds = await provisioner(api).provision(DEVICE)
    assert creds.username == device_user(DEVICE) and len(creds.password) >= 40
    user = f"hwfleet-device-{DEVICE}"
    assert api.users[user] == {"password": creds.password, "tags": ""}
    g = grants(DEVICE)
    assert api.permissions[("%2F", user)] == {
        "configure": g.configure,
        "write": g.write,
        "read": g.read,
    }
    assert {(e, b["write"], b["read"]) for (_, _, e), b in api.topics.items()} == set(g.topics)
    assert [(m, p) for m, p, _ in api.requests] == [
        ("PUT", f"/api/users/{user}"),
        ("PUT", f"/api/permissions/%2F/{user}"),
        ("PUT", f"/api/topic-permissions/%2F/{user}"),
        ("PUT", f"/api/topic-permissions/%2F/{user}"),
    ]
    # Again: a new password for the same user.
    again = await provisioner(api).provision(DEVICE)
    assert again.password != creds.password and api.users[user]["password"] == again.password


async def test_management_api_revokes_and_tolerates_a_missing_user(
    caplog: pytest.LogCaptureFixture,
) -> None:
    api = FakeApi()
    prov = provisioner(api, vhost="lab")
    await prov.provision(DEVICE)
    await prov.revoke(DEVICE)
    assert api.users == {} and api.requests[-1][:2] == (
        "DELETE",
        f"/api/users/{device_user(DEVICE)}",
    )
    await prov.revoke(DEVICE)  # already gone: nothing to do, no error
    assert ("PUT", f"/api/permissions/lab/{device_user(DEVICE)}") in [
        (m, p) for m, p, _ in api.requests
    ]


async def test_management_api_errors_name_the_step_never_the_password(
    caplog: pytest.LogCaptureFixture,
) -> None:
    api = FakeApi(fail="/api/permissions/")
    with pytest.raises(
        BusCredentialsError, match=r"setting the permissions.*HTTP 400: no such vhost"
    ):
        await provisioner(api).provision(DEVICE)
    password = api.users[device_user(DEVICE)]["password"]
    assert password not in caplog.text
    bad_login = ManagementApiProvisioner(
        "http://mq.test:15672", "/", auth=("admin", "wrong"), transport=httpx.MockTransport(api)
    )
    with pytest.raises(BusCredentialsError, match="HTTP 401: Login failed") as info:
        await bad_login.provision(OTHER)
    assert "wrong" not in str(info.value)

    def unreachable(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    down = ManagementApiProvisioner(
        "http://mq.test:15672", "/", auth=("admin", "x"), transport=httpx.MockTransport(unreachable)
    )
    with pytest.raises(BusCredentialsError, match=r"creating user .* ConnectError"):
        await down.provision(DEVICE)
