"""The bus behaviour suite, written once and run on ``memory://`` and on RabbitMQ."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import msgspec
import pytest

from hwfleet.bus import (
    REASON_HEADER,
    Bus,
    Delivery,
    EventKey,
    RejectedMessageError,
    RpcError,
    RpcTimeoutError,
    UnknownNameError,
    decode_object,
)
from hwfleet.bus.topology import ORIGIN_HEADER
from hwfleet.types import JsonObject

DEADLINE = 15.0


class Inbox:
    """Collects deliveries; waiting is on an event, never a sleep."""

    def __init__(self) -> None:
        self.items: list[Delivery] = []
        self._changed = asyncio.Event()

    async def __call__(self, delivery: Delivery) -> None:
        self.items.append(delivery)
        self._changed.set()

    @property
    def keys(self) -> list[str]:
        return [d.routing_key for d in self.items]

    @property
    def bodies(self) -> list[JsonObject]:
        return [msgspec.json.decode(d.body) for d in self.items]

    async def until(self, done: Callable[[], bool], timeout: float = DEADLINE) -> None:
        async with asyncio.timeout(timeout):
            while not done():
                self._changed.clear()
                await self._changed.wait()

    async def count(self, n: int) -> None:
        await self.until(lambda: len(self.items) >= n)


ROUTING_TABLE = {
    "a.*": ["a.b", "a.c"],
    "a.#": ["a", "a.b", "a.b.c", "a.x.c", "a.c"],
    "#": ["a", "a.b", "a.b.c", "a.x.c", "b.c", "x.b.y.z", "a.c"],
    "*.b.#": ["a.b", "a.b.c", "x.b.y.z"],
    "a.#.c": ["a.b.c", "a.x.c", "a.c"],
    "#.c": ["a.b.c", "a.x.c", "b.c", "a.c"],
    "*": ["a"],
    "a.b.c": ["a.b.c"],
    "#.b.#": ["a.b", "a.b.c", "b.c", "x.b.y.z"],
}
KEYS = ["a", "a.b", "a.b.c", "a.x.c", "b.c", "x.b.y.z", "a.c"]


def _marker(pattern: str) -> str:
    return ".".join("zzend" if w in ("*", "#") else w for w in pattern.split("."))


def _has_marker(inbox: Inbox, marker: str) -> bool:
    return any(d.routing_key == marker and b"marker" in d.body for d in inbox.items)


async def test_topic_routing_star_and_hash(bus: Bus) -> None:
    inboxes = {p: Inbox() for p in ROUTING_TABLE}
    for pattern, inbox in inboxes.items():
        await bus.subscribe("events", pattern, inbox)
    for key in KEYS:
        await bus.publish("events", key, {"key": key})
    # A queue is FIFO: once a pattern's own marker arrives, everything before it has too.
    for pattern in ROUTING_TABLE:
        await bus.publish("events", _marker(pattern), {"marker": True})
    for pattern, inbox in inboxes.items():
        marker = _marker(pattern)
        await inbox.until(lambda inbox=inbox, marker=marker: _has_marker(inbox, marker))
        got = [d.routing_key for d in inbox.items if b"marker" not in d.body]
        assert got == ROUTING_TABLE[pattern], pattern
        assert all(d.exchange.endswith("events") for d in inbox.items)


async def test_seed_event_keys_route_to_their_patterns(bus: Bus, peer: Bus) -> None:
    online, tasks = Inbox(), Inbox()
    await peer.subscribe("events", "device.online.*", online)
    await peer.subscribe("events", "task.finished.#", tasks)
    await bus.publish("events", EventKey.device_offline("u1"), {"x": 0})
    await bus.publish("events", EventKey.device_online("u1"), {"uuid": "u1"})
    await bus.publish("events", EventKey.task_finished("t9"), {"task": "t9"})
    await online.count(1)
    await tasks.count(1)
    assert online.keys == ["device.online.u1"] and online.bodies == [{"uuid": "u1"}]
    assert tasks.keys == ["task.finished.t9"]


async def test_fanout_reaches_every_subscriber(bus: Bus, peer: Bus) -> None:
    inboxes = [Inbox() for _ in range(3)]
    await bus.subscribe("devicescan", "#", inboxes[0])
    await peer.subscribe("devicescan", "ignored.for.fanout", inboxes[1])
    await peer.subscribe("devicescan", "", inboxes[2])
    await bus.publish("devicescan", "", {"operationid": 1})
    await bus.publish("devicescan", "whatever", {"operationid": 2})
    for inbox in inboxes:
        await inbox.count(2)
        assert inbox.bodies == [{"operationid": 1}, {"operationid": 2}]


async def test_every_subscriber_gets_its_own_copy(bus: Bus, peer: Bus) -> None:
    first, second = Inbox(), Inbox()
    await bus.subscribe("logging", "#", first)
    await peer.subscribe("logging", "#", second)
    for i in range(10):
        await bus.publish("logging", "info", {"i": i}, headers={"n": i})
    await first.count(10)
    await second.count(10)
    assert first.bodies == second.bodies == [{"i": i} for i in range(10)]
    assert [d.headers["n"] for d in first.items] == list(range(10))


async def test_work_queue_shares_messages_exactly_once(bus: Bus, peer: Bus) -> None:
    seen: dict[str, list[int]] = {"a": [], "b": []}
    both = asyncio.Event()
    done = asyncio.Event()

    def make(name: str) -> Callable[[Delivery], object]:
        async def handler(d: Delivery) -> None:
            seen[name].append(decode_object(d.body)["n"])
            if seen["a"] and seen["b"]:
                both.set()
            # Hold the first message until the other consumer has one too: sharing, not luck.
            await asyncio.wait_for(both.wait(), DEADLINE)
            if len(seen["a"]) + len(seen["b"]) >= 40:
                done.set()

        return handler

    await bus.consume("jobs", make("a"), prefetch=2)  # type: ignore[arg-type]
    await peer.consume("jobs", make("b"), prefetch=2)  # type: ignore[arg-type]
    for n in range(40):
        await bus.send("jobs", {"n": n})
    await asyncio.wait_for(done.wait(), DEADLINE)
    everything = seen["a"] + seen["b"]
    assert sorted(everything) == list(range(40))  # each exactly once
    assert seen["a"] and seen["b"]


async def test_prefetch_bounds_messages_in_flight(bus: Bus, peer: Bus) -> None:
    release = asyncio.Event()
    held: list[int] = []
    three = asyncio.Event()

    async def slow(d: Delivery) -> None:
        held.append(decode_object(d.body)["n"])
        if len(held) >= 3:
            three.set()
        await asyncio.wait_for(release.wait(), DEADLINE)

    fast = Inbox()
    await bus.consume("work", slow, prefetch=3)
    for n in range(20):
        await bus.send("work", {"n": n})
    # Three handlers run at once: prefetch is concurrency, not one at a time.
    await asyncio.wait_for(three.wait(), DEADLINE)
    await peer.consume("work", fast, prefetch=10)
    await fast.count(17)
    # Every message is handed out now, and the slow consumer never held more than three.
    assert len(held) == 3
    assert sorted(held + [b["n"] for b in fast.bodies]) == list(range(20))
    release.set()


async def test_acks_of_handlers_finishing_together_cover_only_what_finished(bus: Bus) -> None:
    # Handlers 0-4 and 6-9 finish together (AMQP folds 0-4 into one multiple ack); 5 is
    # still running then and fails afterwards: it must be requeued, not swept into an ack.
    release, others_done, finished = asyncio.Event(), asyncio.Event(), asyncio.Event()
    started: list[int] = []
    handled: list[int] = []
    failed_once: list[int] = []

    async def handler(d: Delivery) -> None:
        n = decode_object(d.body)["n"]
        started.append(n)
        if len(started) == 10:
            release.set()
        if n == 5 and not failed_once:
            await asyncio.wait_for(others_done.wait(), DEADLINE)
            failed_once.append(n)
            raise RuntimeError("fails the first time")
        if n < 10 and len(started) <= 10:
            await asyncio.wait_for(release.wait(), DEADLINE)
        handled.append(n)
        if len([h for h in handled if h != 5]) == 9:
            others_done.set()
        if n == 10:
            finished.set()

    await bus.consume("acks", handler, prefetch=10)
    for n in range(10):
        await bus.send("acks", {"n": n})
    await asyncio.wait_for(others_done.wait(), DEADLINE)
    await bus.send("acks", {"n": 10})  # queued behind the requeued 5: a marker for the end
    await asyncio.wait_for(finished.wait(), DEADLINE)
    assert failed_once == [5]
    assert sorted(handled) == list(range(11))  # 5 once after its retry; nothing twice


async def test_unconfirmed_publish_reaches_subscribers_in_order(bus: Bus, peer: Bus) -> None:
    inbox = Inbox()
    await peer.subscribe("events", "scan.device.#", inbox)
    for n in range(20):
        await bus.publish("events", f"scan.device.1.sn{n}", {"n": n}, confirm=False)
    await inbox.count(20)
    assert inbox.bodies == [{"n": n} for n in range(20)]


async def test_notify_many_arrives_in_order_routed_by_key(bus: Bus, peer: Bus) -> None:
    # More than one write's worth (amqp_batch.BATCH) and a body larger than RabbitMQ's
    # default frame size (128 KiB), which goes in several body frames.
    big = {"blob": "x" * 300_000}
    messages: list[tuple[str, bytes | JsonObject]] = [
        (f"scan.device.1.sn{n}", {"n": n}) for n in range(2500)
    ]
    messages.insert(1200, ("scan.device.1.big", big))
    messages.insert(7, ("other.key", {"n": -1}))  # routed elsewhere: not in this inbox
    messages.append(("scan.device.1.raw", b'{"raw": true}'))
    inbox = Inbox()
    await peer.subscribe("events", "scan.device.#", inbox)
    await bus.notify_many("events", messages)
    await bus.publish("events", "scan.device.1.after", {"after": True}, confirm=False)
    await inbox.count(2503)
    wanted = [m for m in messages if m[0].startswith("scan.device.")]
    assert inbox.keys == [key for key, _ in wanted] + ["scan.device.1.after"]
    assert inbox.bodies[:1200] == [{"n": n} for n in range(1200)]
    assert inbox.bodies[1200] == big
    assert inbox.bodies[-2:] == [{"raw": True}, {"after": True}]
    assert all(d.exchange.endswith("events") for d in inbox.items)
    await bus.notify_many("events", [])  # nothing to send is not an error


async def test_rpc_success(bus: Bus, peer: Bus) -> None:
    settings: JsonObject = {"scan.quiet_timeout": 10.0}

    async def get(params: JsonObject) -> JsonObject:
        return {"key": params["key"], "value": settings[params["key"]]}

    async def set_(params: JsonObject) -> JsonObject:
        settings[params["key"]] = params["value"]
        return {"key": params["key"], "value": params["value"]}

    await peer.serve("configuration", {"get": get, "set": set_})
    assert await bus.call("configuration", "get", {"key": "scan.quiet_timeout"}) == {
        "key": "scan.quiet_timeout",
        "value": 10.0,
    }
    await bus.call("configuration", "set", {"key": "scan.quiet_timeout", "value": 3})
    results = await asyncio.gather(
        *(bus.call("configuration", "get", {"key": "scan.quiet_timeout"}) for _ in range(20))
    )
    assert all(r["value"] == 3 for r in results)


async def test_rpc_error_reply_names_exchange_and_method(bus: Bus, peer: Bus) -> None:
    async def boom(params: JsonObject) -> JsonObject:
        raise RuntimeError("disk on fire")

    async def missing(params: JsonObject) -> JsonObject:
        raise RpcError("dhcp", "lookupIpLease", "no lease for 10.0.0.9", "not_found")

    await peer.serve("dhcp", {"lookupIpLease": missing, "pinMac": boom})
    with pytest.raises(RpcError) as failed:
        await bus.call("dhcp", "pinMac", {"mac": "aa"})
    assert failed.value.code == "failed" and "disk on fire" in failed.value.msg
    assert "dhcp" in str(failed.value) and "pinMac" in str(failed.value)
    assert not isinstance(failed.value, RpcTimeoutError)
    with pytest.raises(RpcError) as not_found:
        await bus.call("dhcp", "lookupIpLease", {"ip": "10.0.0.9"})
    assert (not_found.value.code, not_found.value.msg) == ("not_found", "no lease for 10.0.0.9")


async def test_rpc_timeout_names_exchange_and_method(bus: Bus, peer: Bus) -> None:
    never = asyncio.Event()

    async def stuck(params: JsonObject) -> JsonObject:
        await asyncio.wait_for(never.wait(), DEADLINE)
        return {}

    await peer.serve("task-graph-runner", {"getTaskGraphLibrary": stuck})
    loop = asyncio.get_running_loop()
    start = loop.time()
    with pytest.raises(RpcTimeoutError) as timed_out:
        await bus.call("task-graph-runner", "getTaskGraphLibrary", {}, timeout=0.3)
    assert 0.25 <= loop.time() - start < 5
    assert isinstance(timed_out.value, TimeoutError)
    text = str(timed_out.value)
    assert "task-graph-runner" in text and "getTaskGraphLibrary" in text
    never.set()


async def test_rpc_without_server_fails_fast(bus: Bus) -> None:
    with pytest.raises(RpcError) as nobody:
        async with asyncio.timeout(5):
            await bus.call("dhcp", "peekLeaseTable", {}, timeout=60)
    assert nobody.value.code == "no_server"
    assert "peekLeaseTable" in str(nobody.value)


@pytest.mark.parametrize(
    ("raw", "expect"),
    [(b"[1, 2]", "must be a JSON object"), (b"{not json", "not JSON"), (b"null", "null")],
)
async def test_rpc_bad_params_get_an_error_reply(
    bus: Bus, peer: Bus, raw: bytes, expect: str
) -> None:
    calls: list[JsonObject] = []

    async def get(params: JsonObject) -> JsonObject:
        calls.append(params)
        return {}

    await peer.serve("configuration", {"get": get})
    with pytest.raises(RpcError) as bad:
        await bus.call("configuration", "get", raw, timeout=5)  # type: ignore[arg-type]
    assert bad.value.code == "bad_params" and expect in bad.value.msg
    assert not isinstance(bad.value, RpcTimeoutError)
    assert calls == []


async def test_rpc_handler_validation_error_is_bad_params(bus: Bus, peer: Bus) -> None:
    async def get(params: JsonObject) -> JsonObject:
        raise ValueError(f"unknown setting {params.get('key')!r}")

    await peer.serve("configuration", {"get": get})
    with pytest.raises(RpcError) as bad:
        await bus.call("configuration", "get", {"key": "nope"})
    assert bad.value.code == "bad_params" and "nope" in bad.value.msg


async def test_competing_rpc_servers_share_calls(bus: Bus, peer: Bus) -> None:
    served: dict[str, int] = {"a": 0, "b": 0}
    both = asyncio.Event()

    def make(name: str):  # type: ignore[no-untyped-def]
        async def get(params: JsonObject) -> JsonObject:
            served[name] += 1
            if served["a"] and served["b"]:
                both.set()
            await asyncio.wait_for(both.wait(), DEADLINE)
            return {"by": name}

        return get

    await bus.serve("configuration", {"get": make("a")})
    await peer.serve("configuration", {"get": make("b")})
    replies = await asyncio.gather(
        *(bus.call("configuration", "get", {}, timeout=DEADLINE) for _ in range(10))
    )
    assert {r["by"] for r in replies} == {"a", "b"}
    assert served["a"] + served["b"] == 10


async def test_bad_body_is_dead_lettered_once_with_reason(bus: Bus) -> None:
    handled: list[bytes] = []
    good = Inbox()
    dead = Inbox()

    async def handler(d: Delivery) -> None:
        handled.append(d.body)
        decode_object(d.body)
        await good(d)

    await bus.consume("dead-letter", dead)
    await bus.consume("scans", handler)
    await bus.send("scans", b"\xff not json", headers={"trace": "t1"})
    await bus.send("scans", {"ok": 1})
    await dead.count(1)
    await good.count(1)  # the consumer keeps serving after a bad message
    assert good.bodies == [{"ok": 1}]
    letter = dead.items[0]
    assert letter.body == b"\xff not json"
    assert "not JSON" in letter.headers[REASON_HEADER]
    assert letter.headers[ORIGIN_HEADER].endswith("scans")
    assert letter.headers["trace"] == "t1"
    assert handled.count(b"\xff not json") == 1  # never redelivered
    assert bus.dead_lettered == 1  # type: ignore[attr-defined]


async def test_failing_handler_requeues_once_then_dead_letters(bus: Bus) -> None:
    attempts: dict[str, list[bool]] = {}
    dead = Inbox()
    flaky_done = asyncio.Event()

    async def handler(d: Delivery) -> None:
        name = decode_object(d.body)["name"]
        attempts.setdefault(name, []).append(d.redelivered)
        if name == "poison" or (name == "flaky" and not d.redelivered):
            raise RuntimeError(f"cannot handle {name}")
        if name == "flaky":
            flaky_done.set()

    await bus.consume("dead-letter", dead)
    await bus.consume("jobs", handler, prefetch=1)
    await bus.send("jobs", {"name": "poison"})
    await bus.send("jobs", {"name": "flaky"})
    await dead.count(1)
    await asyncio.wait_for(flaky_done.wait(), DEADLINE)
    assert attempts["poison"] == [False, True]
    assert attempts["flaky"] == [False, True]
    assert [decode_object(d.body)["name"] for d in dead.items] == ["poison"]
    assert "failed twice" in dead.items[0].headers[REASON_HEADER]
    assert "cannot handle poison" in dead.items[0].headers[REASON_HEADER]
    assert bus.dead_lettered == 1  # type: ignore[attr-defined]


async def test_subscriber_reject_is_dead_lettered(bus: Bus) -> None:
    dead = Inbox()

    async def picky(d: Delivery) -> None:
        raise RejectedMessageError("unknown event type 'bogus'")

    await bus.consume("dead-letter", dead)
    await bus.subscribe("events", "#", picky)
    await bus.publish("events", "bogus.event", b"{}")
    await dead.count(1)
    assert dead.items[0].headers[REASON_HEADER] == "unknown event type 'bogus'"
    assert dead.items[0].routing_key == "bogus.event"


async def test_cancelled_subscription_stops_receiving(bus: Bus) -> None:
    first, second = Inbox(), Inbox()
    sub = await bus.subscribe("events", "#", first)
    await bus.publish("events", "one", {})
    await first.count(1)
    await sub.cancel()
    await bus.subscribe("events", "#", second)
    await bus.publish("events", "two", {})
    await second.count(1)
    assert first.keys == ["one"] and second.keys == ["two"]


async def test_unknown_exchange_is_refused(bus: Bus) -> None:
    with pytest.raises(UnknownNameError, match="unknown exchange 'evnets'"):
        await bus.publish("evnets", "x", {})
    with pytest.raises(UnknownNameError, match="logical name 'events'"):
        await bus.subscribe(bus.topology.exchange("events"), "#", Inbox())  # type: ignore[attr-defined]
