"""The diagnostics endpoint on loopback: good requests answered and authenticated; every kind
of bad datagram dropped without a reply and counted (DESIGN §13)."""

from __future__ import annotations

import json
import time
from pathlib import Path

from tests.integration.mdp.conftest import KEY, RawClient, big_operations

from hwfleet.mdp import wire
from hwfleet.mdp.client import call
from hwfleet.mdp.endpoint import MdpEndpoint


async def test_a_signed_request_is_answered_with_a_signed_reply(
    endpoint: MdpEndpoint, client: RawClient, deadline: float
) -> None:
    req = client.request([{"name": "load_and_memory"}, {"name": "get_available_methods"}])
    await client.send(wire.encode(req))
    [reply] = await client.until(req["nonce"], deadline)
    assert wire.verify(KEY, reply)
    assert reply["status"] is True and reply["version"] == "2"
    load, methods = reply["operations"]
    assert load["status"] and load["result"]["cpus"] >= 1
    assert "Load averages" in methods["result"]["load_and_memory"]
    assert {"inventory", "disk_health", "service_status", "log_tail", "network_check"} <= set(
        methods["result"]
    )
    assert KEY.hex() not in json.dumps(reply)
    assert endpoint.counters["answered"] == 1


async def test_unknown_operation_and_bad_args_fail_in_the_reply(
    endpoint: MdpEndpoint, deadline: float
) -> None:
    ops = [
        {"name": "no_such_op"},
        {"name": "log_tail", "args": {"lines": 5, "colour": "red"}},
        {"name": "log_tail", "args": {"path": "../etc/shadow"}},
    ]
    reply = await call("127.0.0.1", KEY, ops, port=endpoint.port, timeout=deadline)
    assert reply["status"] is False
    unknown, bad_args, escape = reply["operations"]
    assert "unknown operation" in unknown["error"]
    assert "bad args" in bad_args["error"]
    assert escape["error"] == "path must be a file under /var/log"


async def test_wrong_key_is_dropped_silently_and_counted(
    endpoint: MdpEndpoint, client: RawClient, deadline: float
) -> None:
    wrong = wire.sign(b"\x22" * 32, {"operations": [{"name": "load_and_memory"}]})
    assert await client.silent(wire.encode(wrong), deadline)
    assert endpoint.counters["bad_key"] == 1
    # A v2 request that also carries a key (even the right one) is not accepted either.
    leaky = wire.sign(KEY, {"key": KEY.hex(), "operations": []})
    assert await client.silent(wire.encode(leaky), deadline)
    assert endpoint.counters["bad_key"] == 2


async def test_replay_is_dropped_and_counted(
    endpoint: MdpEndpoint, client: RawClient, deadline: float
) -> None:
    req = client.request([{"name": "load_and_memory"}])
    await client.send(wire.encode(req))
    await client.until(req["nonce"], deadline)
    assert await client.silent(wire.encode(req), deadline)
    assert endpoint.counters["replay"] == 1


async def test_stale_and_future_timestamps_are_dropped(
    endpoint: MdpEndpoint, client: RawClient, deadline: float
) -> None:
    now = int(time.time())
    for ts in (now - 31, now + 31):
        stale = client.request([{"name": "load_and_memory"}], ts=ts)
        assert await client.silent(wire.encode(stale), deadline)
    assert endpoint.counters["stale"] == 2
    # Inside the window is fine.
    fresh = client.request([{"name": "load_and_memory"}], ts=now - 25)
    await client.send(wire.encode(fresh))
    assert (await client.until(fresh["nonce"], deadline))[0]["status"]


async def test_malformed_datagrams_are_dropped_and_counted(
    endpoint: MdpEndpoint, client: RawClient, deadline: float
) -> None:
    bad = [
        b"{not json",
        b"\xff\xfe",
        b"[1, 2]",
        json.dumps({"version": "2", "operations": []}).encode(),  # no ts, nonce, mac
        wire.encode(client.request([{"name": 5}])),
        wire.encode(client.request("load_and_memory")),  # type: ignore[arg-type]
        wire.encode(client.request([{"name": "x"}], nonce="short")),
        json.dumps({"version": "3", "operations": []}).encode(),
    ]
    for datagram in bad:
        assert await client.silent(datagram, deadline), datagram
    assert endpoint.counters["malformed"] == len(bad)


async def test_oversized_datagrams_are_dropped_and_counted(
    endpoint: MdpEndpoint, client: RawClient, deadline: float
) -> None:
    big = client.request([{"name": "log_tail", "args": {"path": "a" * 9000}}])
    assert len(wire.encode(big)) > wire.MAX_DATAGRAM
    assert await client.silent(wire.encode(big), deadline)
    assert endpoint.counters["oversized"] == 1


async def test_legacy_requests_are_refused_unless_enabled(deadline: float) -> None:
    legacy = {"key": KEY.hex(), "version": "1.0", "operations": [{"name": "load_and_memory"}]}
    off = MdpEndpoint(KEY, big_operations({}), bind="127.0.0.1", port=0)
    await off.start()
    client = RawClient(off.port)
    try:
        assert await client.silent(json.dumps(legacy).encode(), deadline)
        assert off.counters["legacy_refused"] == 1
    finally:
        client.close()
        await off.close()

    on = MdpEndpoint(KEY, big_operations({}), bind="127.0.0.1", port=0, legacy=True)
    await on.start()
    client = RawClient(on.port)
    try:
        await client.send(json.dumps(legacy).encode())
        reply = await client.recv(deadline)
        assert reply["version"] == "1.0" and reply["status"] is True
        assert "key" not in reply and KEY.hex() not in json.dumps(reply)
        # v1.0 carries the key in the clear: it may not change who can log in.
        trusting = {**legacy, "operations": [{"name": "cluster_trust", "args": {}}]}
        await client.send(json.dumps(trusting).encode())
        [entry] = (await client.recv(deadline))["operations"]
        assert entry == {"name": "cluster_trust", "status": False,
                         "error": "this operation needs version 2"}  # fmt: skip
        wrong = {**legacy, "key": "00" * 32}
        assert await client.silent(json.dumps(wrong).encode(), deadline)
        assert on.counters["bad_key"] == 1
    finally:
        client.close()
        await on.close()


async def test_large_replies_are_split_and_too_large_results_refused(deadline: float) -> None:
    ops = big_operations({"a": 5000, "b": 5000, "c": 5000, "huge": 20000})
    ep = MdpEndpoint(KEY, ops, bind="127.0.0.1", port=0)
    await ep.start()
    client = RawClient(ep.port)
    try:
        names = [{"name": n} for n in ("a", "b", "huge", "c")]
        req = client.request(names)
        await client.send(wire.encode(req))
        parts = []
        while len(parts) < 1 or len(parts) < parts[0]["parts"]:
            parts.append(await client.recv(deadline))
        assert len(parts) >= 3
        assert all(wire.verify(KEY, p) and p["reply_to"] == req["nonce"] for p in parts)
        assert ep.counters["sent"] == len(parts)
        entries = {e["name"]: e for p in parts for e in p["operations"]}
        assert [entries[n]["result"] for n in "abc"] == ["x" * 5000] * 3
        assert entries["huge"]["status"] is False
        assert "more than fits" in entries["huge"]["error"]
        # The client puts the parts back together.
        merged = await call("127.0.0.1", KEY, names, port=ep.port, timeout=deadline)
        assert [e["name"] for e in merged["operations"]] == ["a", "b", "huge", "c"]
        assert merged["status"] is False
    finally:
        client.close()
        await ep.close()


async def test_a_cluster_info_that_fails_here_is_answered_with_the_reason(
    tmp_path: Path, deadline: float
) -> None:
    """An authenticated sender gets a reason, not silence: here the agent's authorized_keys
    cannot be rewritten (it is a directory; a read-only /root/.ssh did this in a trial)."""
    from hwfleet.mdp.cluster import ClusterMember
    from hwfleet.mdp.operations import OperationContext, load_operations
    from hwfleet.mdp.sync import FolderSync, SyncConfig

    (tmp_path / "authorized_keys").mkdir()
    ops = load_operations()
    context = OperationContext(ops)
    config = SyncConfig(str(tmp_path / "key"), str(tmp_path / "known_hosts"),
                        authorized_keys=str(tmp_path / "authorized_keys"))  # fmt: skip
    member = ClusterMember(context, FolderSync(config))
    ep = MdpEndpoint(KEY, ops, bind="127.0.0.1", port=0, context=context, cluster=member.handle)
    await ep.start()
    client = RawClient(ep.port)
    try:
        info = {"cluster_machines": ["127.0.0.1"],
                "cluster_mode": [{"name": "sync_folders", "folder": str(tmp_path)}]}  # fmt: skip
        req = client.request([], cluster_info=info)
        await client.send(wire.encode(req))
        [reply] = await client.until(req["nonce"], deadline)
        assert wire.verify(KEY, reply)
        error = reply["cluster_info"]["error"]
        assert "cluster_info failed here" in error and "authorized_keys" in error, error
    finally:
        client.close()
        await ep.close()
