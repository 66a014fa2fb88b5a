"""The policy that gives ``hwinfo_queue`` its dead-letter exchange (docs/bus.md): what is
sent to the management API, and what an operator is told when no tool could apply it."""

from __future__ import annotations

import json

import httpx
import pytest

from hwfleet.integrations import rabbitmq_policy
from hwfleet.integrations.rabbitmq_users_http import ManagementApiProvisioner


async def test_the_management_api_gets_the_policy_for_the_queue_only() -> None:
    seen: list[tuple[str, str, object]] = []

    def api(request: httpx.Request) -> httpx.Response:
        seen.append((request.method, request.url.raw_path.decode(), json.loads(request.content)))
        return httpx.Response(201)

    tool = ManagementApiProvisioner(
        "http://mq.test:15672", "fleet/a", auth=("admin", "pw"), transport=httpx.MockTransport(api)
    )
    definition = rabbitmq_policy.definition("site.")
    await tool.set_policy(rabbitmq_policy.POLICY_NAME, rabbitmq_policy.PATTERN, definition)
    assert seen == [
        (
            "PUT",
            "/api/policies/fleet%2Fa/hwfleet-hwinfo-queue",
            {
                "pattern": "^hwinfo_queue$",
                "definition": {"dead-letter-exchange": "site.dead-letter"},
                "priority": 0,
                "apply-to": "queues",
            },
        )
    ]


async def test_without_any_tool_the_log_gives_the_command(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(rabbitmq_policy.shutil, "which", lambda _name: None)  # no rabbitmqctl
    # No management API either (none here; one elsewhere would not know this vhost).
    bus = "amqp://guest:guest@127.0.0.1:5672/hwfleet-no-such-vhost"
    assert await rabbitmq_policy.apply_hwinfo_policy("", bus) is None
    assert "could not apply the RabbitMQ policy" in caplog.text
    assert (
        "rabbitmqctl set_policy -p hwfleet-no-such-vhost --apply-to queues hwfleet-hwinfo-queue "
        "'^hwinfo_queue$' '{\"dead-letter-exchange\": \"hwfleet.dead-letter\"}'"
    ) in caplog.text
    assert "guest:guest" not in caplog.text
