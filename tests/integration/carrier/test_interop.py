"""A plain AMQP client that is not hwfleet sees the seed-003 conventions on RabbitMQ."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aio_pika
import pytest

from hwfleet.bus import open_bus
from hwfleet.controller.app import Controller
from hwfleet.settings import ServerSettings
from hwfleet.sim.fleet import SimFleet
from hwfleet.sim.profiles import generate

pytestmark = pytest.mark.rabbit


@pytest.fixture
async def controller(amqp_url: str, tmp_path: Path) -> AsyncIterator[Controller]:
    ctl = Controller(
        ServerSettings(
            data_dir=str(tmp_path),
            agent_listen="127.0.0.1:0",
            api_listen="127.0.0.1:0",
            bus=amqp_url,
            scan_quiet_timeout=7.5,
        )
    )
    await ctl.start()
    try:
        yield ctl
    finally:
        await ctl.close()


async def rpc(
    channel: aio_pika.abc.AbstractChannel, exchange: str, method: str, body: dict[str, Any]
) -> tuple[str | None, dict[str, Any]]:
    """Call through amq.rabbitmq.reply-to, as any AMQP client can."""
    replies = await channel.get_queue("amq.rabbitmq.reply-to", ensure=False)
    got: asyncio.Future[aio_pika.abc.AbstractIncomingMessage] = asyncio.Future()

    async def on_reply(message: aio_pika.abc.AbstractIncomingMessage) -> None:
        if not got.done():
            got.set_result(message)

    tag = await replies.consume(on_reply, no_ack=True)
    target = await channel.get_exchange(exchange, ensure=False)
    correlation = str(uuid.uuid4())
    await target.publish(
        aio_pika.Message(
            json.dumps(body).encode(),
            reply_to="amq.rabbitmq.reply-to",
            correlation_id=correlation,
            content_type="application/json",
        ),
        routing_key=f"methods.{method}",
    )
    async with asyncio.timeout(10):
        message = await got
    await replies.cancel(tag)
    assert message.correlation_id == correlation
    return message.type, json.loads(message.body)


async def test_plain_client_watches_devices_and_calls_configuration(
    controller: Controller, amqp_url: str, tmp_path: Path
) -> None:
    connection = await aio_pika.connect(amqp_url)
    try:
        channel = await connection.channel()
        queue = await channel.declare_queue(exclusive=True)
        await queue.bind("hwfleet.events", "#")
        await queue.bind("hwfleet.logging", "#")
        seen: asyncio.Queue[tuple[str, str, dict[str, Any]]] = asyncio.Queue()

        async def on_message(message: aio_pika.abc.AbstractIncomingMessage) -> None:
            async with message.process():
                await seen.put(
                    (message.exchange or "", message.routing_key or "", json.loads(message.body))
                )

        await queue.consume(on_message)

        device_bus = open_bus(amqp_url)
        await device_bus.start()
        fleet = SimFleet(generate(2, seed=9), bus=device_bus, seed=9)
        await fleet.start()
        try:
            assert await fleet.wait_connected(15) == 2
            await fleet.devices[0].runtime.log("notice", "fan speed high", rpm=9100)
            wanted = {f"device.online.{d.runtime.info.uuid}" for d in fleet.devices}
            got_log = False
            async with asyncio.timeout(15):
                while wanted or not got_log:
                    exchange, key, body = await seen.get()
                    if exchange == "hwfleet.events":
                        wanted.discard(key)
                    if exchange == "hwfleet.logging" and body.get("msg") == "fan speed high":
                        assert key == "notice" and body["fields"] == {"rpm": 9100}
                        got_log = True
        finally:
            await fleet.close()
            await device_bus.close()

        kind, body = await rpc(
            channel, "hwfleet.configuration", "get", {"key": "scan.quiet_timeout"}
        )
        assert body == {"key": "scan.quiet_timeout", "value": 7.5}
        kind, body = await rpc(
            channel, "hwfleet.configuration", "set", {"key": "scan.quiet_timeout", "value": 3}
        )
        assert body == {"key": "scan.quiet_timeout", "value": 3.0}
        assert controller.config.get("scan.quiet_timeout") == 3.0
        kind, body = await rpc(
            channel, "hwfleet.configuration", "set", {"key": "scan.quiet_timeout", "value": "soon"}
        )
        assert kind == "error" and "must be float" in body["error"]["msg"]
        kind, body = await rpc(channel, "hwfleet.configuration", "get", {"key": "nope"})
        assert kind == "error" and "unknown setting" in body["error"]["msg"]
    finally:
        await connection.close()
