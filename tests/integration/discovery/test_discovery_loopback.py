"""Discovery over real UDP sockets on loopback (127.1.0.x): nothing leaves the machine."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from pathlib import Path
from typing import Any

import msgspec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from hwfleet.agent.status import StatusTracker
from hwfleet.discovery import (
    QUERY_SIZE,
    AdvertBody,
    DiscoveryBrowser,
    DiscoveryResponder,
    PacketType,
    build_advert,
    build_query,
    parse,
    public_raw,
)
from hwfleet.discovery.packets import HEADER, MAGIC
from hwfleet.discovery.responder import advert_from

from .conftest import Client, meta_for

HWFLEET = str(Path(sys.executable).with_name("hwfleet"))
FIELDS = {"uuid", "name", "serial", "model_id", "version", "ipaddr", "endpoint", "st_id"}
FIELDS |= {"st_ts", "st_prog", "head_module", "error_label"}
FIELDS |= {"fingerprint", "signed", "spoofed", "state"}


async def test_cli_probe_finds_fifty_simulated_devices(fleet: Any, port: int) -> None:
    responders = await fleet(50)
    proc = await asyncio.create_subprocess_exec(
        HWFLEET,
        "discover",
        "--probe",
        "127.1.0.0/24",
        "--port",
        str(port),
        "--timeout",
        "1.5",
        "--json",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "NO_COLOR": "1"},
    )
    async with asyncio.timeout(30):
        out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    docs = msgspec.json.decode(out)
    assert isinstance(docs, list) and len(docs) == 50
    by_uuid = {d["uuid"]: d for d in docs}
    for index, responder in enumerate(responders, start=1):
        meta = meta_for(index)
        doc = by_uuid[meta.uuid]
        assert doc.keys() >= FIELDS
        assert (doc["name"], doc["serial"], doc["ipaddr"]) == (meta.name, meta.serial, meta.ipaddr)
        assert doc["endpoint"] == [meta.ipaddr, 12345]
        assert doc["signed"] is True and doc["spoofed"] is False and doc["state"] == "online"
        assert doc["fingerprint"].startswith("SHA256:")
        assert responder.stats()["replies"] >= 1


async def test_browser_scan_lists_every_device_once(fleet: Any, port: int) -> None:
    await fleet(50, signed=False)
    async with DiscoveryBrowser(probe=["127.1.0.0/26"], port=port, retry_interval=0.1) as browser:
        found = await browser.scan(5.0)
        assert [d.metadata.ipaddr for d in found] == [f"127.1.0.{i}" for i in range(1, 51)]
        assert all(not d.signed and d.state == "online" for d in found)
        assert browser.stats()["queries_sent"] >= 62


async def test_status_change_is_announced_and_seen(port: int) -> None:
    key = Ed25519PrivateKey.generate()
    meta = meta_for(7)
    tracker = StatusTracker()
    browser = DiscoveryBrowser(
        probe=["127.1.0.7"],
        port=port,
        listen=("127.0.0.1", 0),
        known_keys={meta.uuid: public_raw(key)}.get,
    )
    await browser.start()
    listen = browser.listen_address
    assert listen is not None
    responder = DiscoveryResponder(
        lambda: tracker.apply(meta),
        bind=meta.ipaddr,
        port=port,
        group=None,
        signing_key=key,
        announce_to=[listen],
    )
    tracker.on_change = responder.announce_soon
    await responder.start()
    try:
        updates = browser.updates()
        first = (await browser.scan(3.0, expect=1))[0]
        assert first.trusted and first.metadata.st_id == 0
        tracker.set_task_progress(42.0)
        async with asyncio.timeout(5):
            update = await anext(updates)
            while update.metadata.st_id != 16:
                update = await anext(updates)
        assert update.metadata.st_prog == 42.0 and update.trusted and not update.spoofed
    finally:
        await responder.close()
        await browser.close()


async def test_spoofed_announcement_is_flagged_and_good_record_kept(port: int) -> None:
    key, forger_key = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    meta = meta_for(9)
    async with DiscoveryBrowser(
        probe=[meta.ipaddr],
        port=port,
        listen=("127.0.0.1", 0),
        known_keys={meta.uuid: public_raw(key)}.get,
    ) as browser:
        listen = browser.listen_address
        assert listen is not None
        async with DiscoveryResponder(
            lambda: meta, bind=meta.ipaddr, port=port, group=None, signing_key=key
        ):
            assert len(await browser.scan(3.0, expect=1)) == 1
        updates = browser.updates()
        evil = meta_for(9, address="127.1.0.66", name="evil-twin")
        async with DiscoveryResponder(
            lambda: evil,
            bind="127.1.0.66",
            port=port,
            group=None,
            signing_key=forger_key,
            announce_to=[listen],
        ) as forger:
            assert await forger.announce() == 1
            async with asyncio.timeout(5):
                update = await anext(updates)
        assert update.event == "spoofed" and update.spoofed
        assert update.spoof_source == "127.1.0.66"
        assert update.metadata.name == "sim-9" and update.metadata.ipaddr == meta.ipaddr
        listed = browser.devices()[0].to_json()
        assert listed["spoofed"] is True and listed["name"] == "sim-9"
        assert browser.stats()["spoofed"] == 1


async def test_device_that_changes_ip_keeps_its_identity(port: int) -> None:
    key = Ed25519PrivateKey.generate()
    old, new = meta_for(3), meta_for(3, address="127.1.0.203")
    async with DiscoveryBrowser(
        probe=["127.1.0.0/24"], port=port, known_keys={old.uuid: public_raw(key)}.get
    ) as browser:
        async with DiscoveryResponder(
            lambda: old, bind=old.ipaddr, port=port, group=None, signing_key=key
        ):
            assert [d.metadata.ipaddr for d in await browser.scan(3.0, expect=1)] == [old.ipaddr]
        updates = browser.updates()
        async with DiscoveryResponder(
            lambda: new, bind=new.ipaddr, port=port, group=None, signing_key=key
        ):
            found = await browser.scan(3.0, expect=1)
        assert len(found) == 1 and len(browser.devices()) == 1
        device = found[0]
        assert device.metadata.uuid == old.uuid and device.metadata.ipaddr == "127.1.0.203"
        assert device.trusted and not device.spoofed
        assert (await anext(updates)).event == "moved"
        assert [h.ipaddr for h in device.history] == [old.ipaddr, "127.1.0.203"]


async def test_replays_and_unsolicited_replies_are_rejected(client: Client, port: int) -> None:
    meta = meta_for(11)
    async with DiscoveryBrowser(probe=[], port=port, listen=("127.0.0.1", 0), group=None) as b:
        listen = b.listen_address
        assert listen is not None
        fresh = advert_from(meta, nonce="ab" * 16, ts=time.time())
        announce = build_advert(PacketType.ANNOUNCE, fresh, None, limit=QUERY_SIZE)
        stale = advert_from(meta, nonce="cd" * 16, ts=time.time() - 3600)
        old = build_advert(PacketType.ANNOUNCE, stale, None, limit=QUERY_SIZE)
        reply = build_advert(PacketType.REPLY, fresh, None, limit=QUERY_SIZE)
        assert announce and old and reply
        last = advert_from(meta_for(12), nonce="ef" * 16, ts=time.time())
        marker = build_advert(PacketType.ANNOUNCE, last, None, limit=QUERY_SIZE)
        assert marker
        updates = b.updates()
        for data in (announce, announce, old, reply, announce, marker):
            client.send(data, listen)
        async with asyncio.timeout(5):
            first = await anext(updates)
            # One socket's datagrams arrive in order: the marker comes after all the others.
            assert (await anext(updates)).metadata.uuid == last.uuid
        stats = b.stats()
        assert first.metadata.uuid == meta.uuid
        assert (stats["accepted"], stats["replayed"], stats["expired"]) == (2, 2, 1)
        assert stats["unsolicited"] == 1


async def test_responder_drops_garbage_counts_it_and_keeps_serving(
    client: Client, port: int
) -> None:
    meta = meta_for(21)
    body = msgspec.json.encode(advert_from(meta, nonce="ab" * 16, ts=1.0))
    garbage = [
        b"",
        b"x",
        b"HWFD",
        bytes(3000),
        HEADER.pack(MAGIC, 7, 1, 0, 0, 4) + b"{}" + bytes(1300),
        HEADER.pack(MAGIC, 1, 1, 0, 0, 900) + b"{}",
        HEADER.pack(MAGIC, 1, 1, 0, 0, 5) + b"{oops" + bytes(1300),
        build_query()[0][:600],
        HEADER.pack(MAGIC, 1, 2, 0, 0, len(body)) + body,
    ]
    async with DiscoveryResponder(lambda: meta, bind=meta.ipaddr, port=port, group=None) as r:
        for data in garbage:
            client.send(data, r.address)
        query, nonce = build_query()
        client.send(query, r.address)
        async with asyncio.timeout(5):
            data, addr = await client.received.get()
        # Datagrams from one socket arrive in order: the first reply is to the valid query.
        packet = parse(data)
        assert isinstance(packet.body, AdvertBody) and packet.body.nonce == nonce
        assert addr == r.address and len(data) <= len(query)
        stats = r.stats()
        assert stats["received"] == len(garbage) + 1 and stats["replies"] == 1
        assert stats["bad"] == len(garbage) - 1 and stats["ignored"] == 1
        for code in ("short", "oversized", "version", "truncated", "json", "unpadded"):
            assert stats[f"bad_{code}"] >= 1, code


async def test_replies_never_exceed_the_query_and_are_rate_limited(
    client: Client, other_client: Client, port: int
) -> None:
    # Two-byte UTF-8 characters: the full reply needs more than 1200 bytes, less than 1472.
    meta = meta_for(22, name="ü" * 128, model_id="ü" * 128, version="v" * 128)
    meta.error_label = "e" * 128
    key = Ed25519PrivateKey.generate()
    async with DiscoveryResponder(
        lambda: meta, bind=meta.ipaddr, port=port, group=None, signing_key=key, rate=1, burst=4
    ) as r:
        sizes = [QUERY_SIZE, 1300, 1472]
        for size in sizes:
            query, _ = build_query()
            client.send(query + bytes(size - len(query)), r.address)
        replies = []
        async with asyncio.timeout(5):
            for _ in sizes:
                replies.append((await client.received.get())[0])
        for size, data in zip(sizes, replies, strict=True):
            assert len(data) <= size
        assert parse(replies[0]).truncated and not parse(replies[2]).truncated
        for _ in range(10):
            client.send(build_query()[0], r.address)
        # Queued behind the flood, from another source with a full bucket: answered.
        other_client.send(build_query()[0], r.address)
        async with asyncio.timeout(5):
            await other_client.received.get()
        stats = r.stats()
        assert stats["received"] == 14 and stats["rate_limited"] >= 8
        assert stats["replies"] == 14 - stats["rate_limited"]
        assert client.received.qsize() == stats["replies"] - 4


async def test_without_interface_or_probe_only_loopback_multicast_is_used(port: int) -> None:
    meta = meta_for(31, address="127.0.0.1")
    async with (
        DiscoveryResponder(lambda: meta, port=port, interface="lo") as responder,
        DiscoveryBrowser(port=port) as browser,
    ):
        assert browser.multicast and browser.multicast_interface == "lo"
        transport = browser._transports[0]
        assert transport.get_extra_info("sockname")[0] == "127.0.0.1"
        found = await browser.scan(3.0, expect=1)
        assert [d.metadata.uuid for d in found] == [meta.uuid]
        assert found[0].source == "127.0.0.1"
        assert responder.stats()["replies"] == 1
