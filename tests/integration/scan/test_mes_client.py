"""The MES client against a real mes-sim on 127.0.0.1: records, bad answers, retries."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from hwfleet.integrations.mes import MesClient, MesError
from hwfleet.sim.mes import MesSimulator, bind_socket, serve

PROFILE: dict[str, Any] = {
    "devices": [
        {"sn": 1001, "interfaces": [{"name": "enp4s0", "mac": "e0:18:7d:2e:ca:68"}]},
        {"sn": "B-7", "interfaces": [{"name": "eth0", "mac": "00:11:22:33:44:55"}]},
    ],
    "mes": {
        "records": {
            "2002": [
                {
                    "serialNo": "2002",
                    "macInfo": [{"interface": "a", "macaddr": "00:00:00:00:00:01"}],
                },
                {
                    "serialNo": "2002",
                    "macInfo": [{"interface": "b", "macaddr": "00:00:00:00:00:02"}],
                },
            ]
        },
        "unregistered": [1001],
    },
}


def urls(base: str) -> dict[str, str]:
    return {
        "get": f"{base}/deviceInfo/getById",
        "scan": f"{base}/log/deviceScan",
        "pair": f"{base}/operations/pair",
        "notify": f"{base}/notifications/devicescan",
    }


@pytest.fixture
async def sim() -> AsyncIterator[tuple[MesSimulator, str]]:
    simulator = MesSimulator.from_profile(PROFILE)
    async with serve(simulator) as base:
        yield simulator, base


async def faults(base: str, **spec: Any) -> None:
    async with httpx.AsyncClient() as http:
        response = await http.post(f"{base}/_faults", json=spec)
        assert response.status_code == 200, response.text


async def test_lookup_registered_unregistered_and_union(sim: tuple[MesSimulator, str]) -> None:
    _, base = sim
    async with MesClient(urls(base), retry_for=1.0) as mes:
        record = await mes.get_device("B-7")
        assert record.registered
        assert [m.macaddr for m in record.macs] == ["00:11:22:33:44:55"]
        unregistered = await mes.get_device(1001)
        assert not unregistered.registered
        assert unregistered.reason == "MES: Device is not registered"
        union = await mes.get_device(2002)
        assert [m.interface for m in union.macs] == ["a", "b"]
        assert not (await mes.get_device(9999)).registered


async def test_lookup_url_with_its_own_query_and_an_awkward_serial(
    sim: tuple[MesSimulator, str],
) -> None:
    """A configured URL may carry a query (an API key); the serial is URL-encoded."""
    _, base = sim
    configured = {**urls(base), "get": f"{base}/deviceInfo/getById?apikey=k"}
    async with MesClient(configured, retry_for=1.0) as mes:
        assert (await mes.get_device("B-7")).registered
        odd = await mes.get_device("A&serialno=B-7")  # must not smuggle a second parameter
        assert not odd.registered


@pytest.mark.parametrize(
    ("garbage", "message"),
    [
        ("404", "answered 404 Not Found"),
        ("html", "answered HTML (text/html) instead of a JSON record"),
        ("json", "answered invalid JSON"),
    ],
)
async def test_bad_answers_are_clear_errors(
    sim: tuple[MesSimulator, str], garbage: str, message: str
) -> None:
    _, base = sim
    await faults(base, garbage=garbage)
    async with MesClient(urls(base), retry_for=1.0) as mes:
        with pytest.raises(MesError) as info:
            await mes.get_device("B-7")
    text = str(info.value)
    assert message in text
    assert "serialno=B-7" in text


async def test_500s_are_retried_until_the_mes_recovers(sim: tuple[MesSimulator, str]) -> None:
    simulator, base = sim
    await faults(base, down_for=0.6)
    async with MesClient(urls(base), retry_for=10.0, backoff=0.05, backoff_cap=0.2) as mes:
        record = await mes.get_device("B-7")
    assert record.registered
    assert simulator.lookups == 1  # 503s are answered before the lookup counts


async def test_while_the_mes_is_down_one_lookup_probes_and_the_rest_wait(
    sim: tuple[MesSimulator, str],
) -> None:
    simulator, base = sim
    await faults(base, down_for=1.5)
    n = 40
    async with MesClient(urls(base), retry_for=30.0, backoff=0.05, backoff_cap=0.2) as mes:
        records = await asyncio.gather(*(mes.get_device("B-7") for _ in range(n)))
    assert all(r.registered for r in records)
    # Each lookup tries once, one of them probes the MES until it answers, then each
    # tries again: about 2n + 1.5 s / 0.2 s. Retrying on their own they would make
    # about n * 10 requests in those 1.5 s.
    assert simulator.lookups_received < 3 * n, simulator.lookups_received


async def test_persistent_500_gives_up_with_reason(sim: tuple[MesSimulator, str]) -> None:
    _, base = sim
    await faults(base, fail_rate=1.0)
    async with MesClient(urls(base), retry_for=0.5, backoff=0.05, backoff_cap=0.1) as mes:
        with pytest.raises(
            MesError, match=r"answered 500 Internal Server Error after \d+ attempts"
        ):
            await mes.get_device("B-7")


async def test_unreachable_mes_is_an_error_not_a_crash() -> None:
    sock = bind_socket("127.0.0.1", 0)
    port = sock.getsockname()[1]
    sock.close()  # nothing listens here now
    async with MesClient(urls(f"http://127.0.0.1:{port}"), retry_for=0.3, backoff=0.05) as mes:
        with pytest.raises(MesError, match="unreachable"):
            await mes.get_device(1)


async def test_deliver_records_key_and_reports_outcomes(sim: tuple[MesSimulator, str]) -> None:
    simulator, base = sim
    async with MesClient(urls(base)) as mes:
        first = await mes.deliver(
            f"{base}/operations/pair", {"operationid": 1, "snArray": [1]}, idempotency_key="k1"
        )
        again = await mes.deliver(
            f"{base}/operations/pair", {"operationid": 1, "snArray": [1]}, idempotency_key="k1"
        )
        assert first.ok and again.ok
        bad = await mes.deliver(f"{base}/nowhere", {}, idempotency_key="k2")
        assert not bad.ok and bad.status == 404 and not bad.retryable
        await faults(base, fail_rate=1.0)
        failing = await mes.deliver(f"{base}/operations/pair", {}, idempotency_key="k3")
        assert not failing.ok and failing.retryable and "500" in (failing.error or "")
    assert simulator.counts == {"k1": 2}
    assert [p["duplicate"] for p in simulator.posts] == [False, True]


async def test_received_endpoint_and_fault_validation(sim: tuple[MesSimulator, str]) -> None:
    _, base = sim
    async with httpx.AsyncClient() as http:
        await http.post(
            f"{base}/log/deviceScan", json={"operationid": 3}, headers={"Idempotency-Key": "x"}
        )
        received = (await http.get(f"{base}/_received")).json()
        assert received["posts"] == [
            {"path": "/log/deviceScan", "key": "x", "body": {"operationid": 3}, "duplicate": False}
        ]
        bad = await http.post(f"{base}/_faults", json={"fail_rate": 3})
        assert bad.status_code == 400 and "fail_rate" in bad.json()["error"]


async def test_an_unusable_url_is_reported_at_once_not_retried() -> None:
    async with MesClient(urls("http://[::1"), retry_for=60.0) as mes:
        with pytest.raises(MesError, match="not a usable URL") as error:
            await mes.get_device(1)
        assert "attempts" not in str(error.value)  # refused on the first try
        outcome = await mes.deliver("http://[::1/log/deviceScan", {}, idempotency_key="k")
        assert not outcome.ok and not outcome.retryable and "not a usable URL" in str(outcome.error)


class RecordingProxy:
    """An HTTP proxy on 127.0.0.1 that answers every request itself with one MES record."""

    RECORD = b'{"info": [{"serialNo": "7", "macInfo": [{"macaddr": "02:00:00:00:00:07"}]}]}'

    def __init__(self) -> None:
        self.request_lines: list[str] = []

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while head := await reader.readuntil(b"\r\n\r\n"):
                self.request_lines.append(head.split(b"\r\n", 1)[0].decode())
                writer.write(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                    b"Content-Length: %d\r\n\r\n%s" % (len(self.RECORD), self.RECORD)
                )
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass  # the client closed its connection
        finally:
            writer.close()


async def test_the_proxy_an_operator_set_is_used_unless_no_proxy_names_the_host(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    proxy = RecordingProxy()
    server = await asyncio.start_server(proxy.handle, "127.0.0.1", 0)
    proxy_port = server.sockets[0].getsockname()[1]
    sock = bind_socket("127.0.0.1", 0)
    mes_port = sock.getsockname()[1]
    sock.close()  # no MES listens here: only the proxy can answer
    mes_urls = urls(f"http://127.0.0.1:{mes_port}")
    async with server:
        monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{proxy_port}")
        monkeypatch.delenv("NO_PROXY", raising=False)
        monkeypatch.delenv("no_proxy", raising=False)
        async with MesClient(mes_urls, retry_for=0.3, backoff=0.05) as mes:
            record = await mes.get_device(7)
        assert record.registered and [m.key for m in record.macs] == ["02:00:00:00:00:07"]
        target = f"http://127.0.0.1:{mes_port}/deviceInfo/getById?serialno=7"
        assert proxy.request_lines == [f"GET {target} HTTP/1.1"]
        monkeypatch.setenv("NO_PROXY", "127.0.0.1")
        async with MesClient(mes_urls, retry_for=0.3, backoff=0.05) as mes:
            with pytest.raises(MesError, match="unreachable"):
                await mes.get_device(7)
        assert len(proxy.request_lines) == 1


async def test_a_mes_that_never_answers_times_out_and_is_retried(
    sim: tuple[MesSimulator, str],
) -> None:
    simulator, base = sim
    await faults(base, latency=60.0)  # every lookup is held: only our timeout ends it
    async with MesClient(urls(base), timeout=0.2, retry_for=0.6, backoff=0.05) as mes:
        with pytest.raises(MesError, match=r"unreachable \(no answer in time\) after \d+ attempts"):
            await mes.get_device("B-7")
    assert simulator.lookups_received >= 2  # timed out, then tried again
    await faults(base, latency=0.0)  # release the held requests before the server stops
