"""A plain AMQP client that is not hwfleet talks to hwfleet's bus (how operators try it)."""

from __future__ import annotations

import asyncio
import logging
import shutil
import subprocess
import uuid
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import aio_pika
import msgspec
import pytest
from aio_pika.abc import AbstractIncomingMessage, AbstractRobustConnection
from tests.conftest import service_missing

from hwfleet.bus import REASON_HEADER, Delivery, EventKey, decode_object
from hwfleet.bus.amqp import AmqpBus
from hwfleet.bus.amqp_connect import BusUnavailableError
from hwfleet.types import JsonObject

pytestmark = pytest.mark.rabbit
DEADLINE = 15.0


@pytest.fixture
async def hw(amqp_url: str) -> AsyncIterator[AmqpBus]:
    bus = AmqpBus(amqp_url, connect_timeout=10)  # the default "hwfleet." prefix
    await bus.start()
    try:
        yield bus
    finally:
        await bus.close()


@pytest.fixture
async def plain(amqp_url: str) -> AsyncIterator[AbstractRobustConnection]:
    conn = await aio_pika.connect_robust(amqp_url)
    try:
        yield conn
    finally:
        await conn.close()


async def test_plain_client_sees_events_and_logs(
    hw: AmqpBus, plain: AbstractRobustConnection
) -> None:
    channel = await plain.channel()
    got: asyncio.Queue[AbstractIncomingMessage] = asyncio.Queue()
    for exchange in ("hwfleet.events", "hwfleet.logging"):
        queue = await channel.declare_queue(exclusive=True)
        await queue.bind(exchange, routing_key="#")
        await queue.consume(got.put, no_ack=True)
    device = str(uuid.uuid4())
    await hw.publish("events", EventKey.device_online(device), {"uuid": device})
    await hw.publish("logging", "warning", {"uuid": device, "msg": "fan slow"})
    seen: dict[str, AbstractIncomingMessage] = {}
    async with asyncio.timeout(DEADLINE):
        while len(seen) < 2:
            message = await got.get()
            seen[message.exchange] = message
    event = seen["hwfleet.events"]
    assert event.routing_key == f"device.online.{device}"
    assert msgspec.json.decode(event.body) == {"uuid": device}
    assert event.user_id == (urlsplit(hw.url).username or None)
    assert seen["hwfleet.logging"].routing_key == "warning"


async def _plain_call(
    channel: aio_pika.abc.AbstractChannel,
    replies: asyncio.Queue[AbstractIncomingMessage],
    body: bytes,
) -> AbstractIncomingMessage:
    corr = uuid.uuid4().hex
    exchange = await channel.get_exchange("hwfleet.configuration", ensure=False)
    await exchange.publish(
        aio_pika.Message(body, correlation_id=corr, reply_to="amq.rabbitmq.reply-to"),
        routing_key="methods.get",
    )
    async with asyncio.timeout(DEADLINE):
        while True:
            reply = await replies.get()
            if reply.correlation_id == corr:
                return reply


async def test_plain_client_calls_configuration_get(
    hw: AmqpBus, plain: AbstractRobustConnection
) -> None:
    async def get(params: JsonObject) -> JsonObject:
        if params.get("key") != "scan.quiet_timeout":
            raise ValueError(f"unknown setting {params.get('key')!r}")
        return {"key": "scan.quiet_timeout", "value": 10.0}

    await hw.serve("configuration", {"get": get})
    channel = await plain.channel()
    replies: asyncio.Queue[AbstractIncomingMessage] = asyncio.Queue()
    # Direct reply-to: consume the pseudo-queue, no ack, on the channel that publishes.
    reply_queue = await channel.get_queue("amq.rabbitmq.reply-to", ensure=False)
    await reply_queue.consume(replies.put, no_ack=True)

    ok = await _plain_call(channel, replies, b'{"key": "scan.quiet_timeout"}')
    assert ok.type == "result"
    assert msgspec.json.decode(ok.body) == {"key": "scan.quiet_timeout", "value": 10.0}

    bad = await _plain_call(channel, replies, b"[]")
    assert bad.type == "error"
    assert msgspec.json.decode(bad.body)["error"]["code"] == "bad_params"

    unknown = await _plain_call(channel, replies, b'{"key": "nope"}')
    assert msgspec.json.decode(unknown.body)["error"] == {
        "msg": "unknown setting 'nope'",
        "code": "bad_params",
    }


async def test_seed000_device_declaring_hwinfo_queue_plainly(
    hw: AmqpBus, plain: AbstractRobustConnection, caplog: pytest.LogCaptureFixture
) -> None:
    """A pika device from seed 000 declares ``hwinfo_queue`` durable, without our arguments."""
    channel = await plain.channel()
    # The session's vhost is shared: a controller test may have declared ours already.
    await channel.queue_delete("hwinfo_queue")
    await channel.declare_queue("hwinfo_queue", durable=True)
    got: asyncio.Queue[Delivery] = asyncio.Queue()

    async def handler(d: Delivery) -> None:
        await got.put(d)

    with caplog.at_level(logging.WARNING):
        sub = await hw.consume("hwinfo_queue", handler)
    assert caplog.text == ""  # hwfleet declares it exactly as the device did
    await channel.default_exchange.publish(
        aio_pika.Message(b'{"operationid": 1, "scaninfo": []}', delivery_mode=2),
        routing_key="hwinfo_queue",
    )
    await hw.send("hwinfo_queue", {"operationid": 2, "scaninfo": []})
    async with asyncio.timeout(DEADLINE):
        first, second = await got.get(), await got.get()
    assert [
        decode_object(first.body)["operationid"],
        decode_object(second.body)["operationid"],
    ] == [
        1,
        2,
    ]
    await sub.cancel()
    await channel.queue_delete("hwinfo_queue")


async def test_dead_letters_reach_a_plain_client(
    hw: AmqpBus, plain: AbstractRobustConnection
) -> None:
    channel = await plain.channel()
    queue = await channel.declare_queue(exclusive=True)
    await queue.bind("hwfleet.dead-letter", routing_key="#")
    got: asyncio.Queue[AbstractIncomingMessage] = asyncio.Queue()
    await queue.consume(got.put, no_ack=True)

    async def strict(d: Delivery) -> None:
        decode_object(d.body)

    await hw.consume("interop.jobs", strict)
    await hw.send("interop.jobs", b"<xml/>")
    async with asyncio.timeout(DEADLINE):
        letter = await got.get()
    assert letter.body == b"<xml/>"
    assert "not JSON" in str(letter.headers[REASON_HEADER])
    assert letter.delivery_mode == aio_pika.DeliveryMode.PERSISTENT


def _list_queues(vhost: str) -> dict[str, str]:
    ctl = shutil.which("rabbitmqctl")
    if ctl is None:
        service_missing("rabbitmqctl is not on this machine")
    out = subprocess.run(
        [ctl, "list_queues", "-q", "-p", vhost, "name", "type", "durable"],
        check=True,
        capture_output=True,
        text=True,
        timeout=30,
    ).stdout
    rows = [line.split("\t") for line in out.splitlines() if "\t" in line]
    return {r[0]: f"{r[1]}/{r[2]}" for r in rows}


async def test_work_queues_are_durable_quorum_queues(hw: AmqpBus, amqp_url: str) -> None:
    await hw.send("kinds.work", {"n": 1})
    await hw.send("hwinfo_queue", {"operationid": 0})
    queues = _list_queues(urlsplit(amqp_url).path.lstrip("/") or "/")
    assert queues["hwfleet.kinds.work"] == "quorum/true"
    assert queues["hwfleet.dead-letter"] == "quorum/true"
    # Seed 000's queue is declared as its reference devices declare it (docs/bus.md).
    assert queues["hwinfo_queue"] == "classic/true"
    await hw.close()
    channel = await (conn := await aio_pika.connect(amqp_url)).channel()
    await channel.queue_delete("hwinfo_queue")
    await conn.close()


async def test_start_without_broker_logs_and_gives_up(caplog: pytest.LogCaptureFixture) -> None:
    import socket

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    bus = AmqpBus(f"amqp://guest:guest@127.0.0.1:{port}/", connect_timeout=1.5)
    loop = asyncio.get_running_loop()
    start = loop.time()
    with (
        caplog.at_level(logging.WARNING, logger="hwfleet.bus.amqp_connect"),
        pytest.raises(BusUnavailableError, match=f"127.0.0.1:{port} refused the connection"),
    ):
        await bus.start()
    assert 1.0 < loop.time() - start < 8
    assert (
        f"RabbitMQ at 127.0.0.1:{port} refused the connection — is it running? "
        "set --bus or HWFLEET_BUS; retrying in 1 s"
    ) in caplog.text


async def test_wrong_password_fails_at_once(amqp_url: str) -> None:
    parts = urlsplit(amqp_url)
    bad = f"amqp://guest:wrong@{parts.hostname}:{parts.port or 5672}{parts.path}"
    with pytest.raises(BusUnavailableError, match="refused the login"):
        async with asyncio.timeout(10):
            await AmqpBus(bad).start()


async def test_seed_names_an_earlier_hwfleet_declared_are_migrated_or_explained(
    amqp_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Brokers that ran an earlier hwfleet hold a durable ``devicescan`` and a quorum
    ``hwinfo_queue`` with arguments: replaced when nothing can be lost, else used as they
    are with an error saying what to do — never a failed start."""
    old_args = {"x-queue-type": "quorum", "x-dead-letter-exchange": "hwfleet.dead-letter"}
    conn = await aio_pika.connect(amqp_url)
    try:
        channel = await conn.channel()
        await channel.queue_delete("hwinfo_queue")
        await channel.exchange_delete("devicescan")
        await channel.declare_exchange("devicescan", aio_pika.ExchangeType.FANOUT, durable=True)
        await channel.declare_queue("hwinfo_queue", durable=True, arguments=old_args)
        # A device still bound to the old exchange: it cannot be replaced under it.
        bound = await channel.declare_queue(exclusive=True)
        await bound.bind("devicescan")
        with caplog.at_level(logging.WARNING):
            bus = AmqpBus(amqp_url, connect_timeout=10)
            await bus.start()
            got: asyncio.Queue[Delivery] = asyncio.Queue()

            async def handler(d: Delivery) -> None:
                await got.put(d)

            await bus.consume("hwinfo_queue", handler)
            await bus.publish("devicescan", "", {"operationid": 1, "action": 1})
            await bus.send("hwinfo_queue", {"operationid": 1})
            async with asyncio.timeout(DEADLINE):
                assert decode_object((await got.get()).body) == {"operationid": 1}
            await bus.close()
        assert "exchange devicescan exists as declared by an earlier hwfleet" in caplog.text
        assert "rabbitmqctl delete_queue hwinfo_queue" in caplog.text
        await bound.delete(if_unused=False, if_empty=False)
        caplog.clear()

        # Nothing bound, the queue empty and classic: both are replaced, and a reference
        # device's declarations succeed.
        await channel.queue_delete("hwinfo_queue")
        await channel.declare_queue(
            "hwinfo_queue", durable=True, arguments={"x-dead-letter-exchange": "x"}
        )
        with caplog.at_level(logging.WARNING):
            bus = AmqpBus(amqp_url, connect_timeout=10)
            await bus.start()
            await bus.consume("hwinfo_queue", handler)
            await bus.close()
        assert "replaced the durable one" in caplog.text
        assert "replaced the empty, unused one" in caplog.text
        await channel.declare_exchange("devicescan", aio_pika.ExchangeType.FANOUT, durable=False)
        await channel.declare_queue("hwinfo_queue", durable=True)
        await channel.queue_delete("hwinfo_queue")
    finally:
        await conn.close()
