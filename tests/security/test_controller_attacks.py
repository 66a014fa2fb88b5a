"""Issue 5's attack suite against the real controller: gateway, enrollment, keys, REST.

A real :class:`~hwfleet.controller.app.Controller` (SQLite, memory bus, the TLS
agent gateway and the REST API on 127.0.0.1) serves three simulated devices
enrolled by the real agent stack. Each attack comes from its own loopback
source address, and every case asserts two things: the refusal, and that the
legitimate devices kept working (they answer ping through ``ctl.devices`` and
through ``POST /api/v1/devices/ping``).

The enrollment rate limiter is the controller's own, with an injected clock, so
"after the window" is a clock step, never a sleep.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import logging
import ssl
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from tests.conftest import wait_for

from hwfleet.agent.links.enroll import enroll
from hwfleet.agent.links.stream import StreamLink
from hwfleet.agent.links.tls import AgentTls
from hwfleet.bus.base import Bus, Delivery, Subscription
from hwfleet.controller.app import Controller
from hwfleet.protocol import methods
from hwfleet.protocol.errors import RemoteError
from hwfleet.protocol.framing import STREAM_LIMIT
from hwfleet.settings import ServerSettings
from hwfleet.sim.fleet import SimFleet, SimulatedDevice, runtime_for
from hwfleet.sim.profiles import generate
from hwfleet.store import EventRecord, KeyRecord
from hwfleet.trust import AgentIdentity, FirstContactError, RateLimiter, enrolled_context

PASSWORD = "correct horse battery staple"
#: Where the attacks come from, and where another legitimate agent enrolls from.
ATTACKER = "127.66.0.1"
BYSTANDER = "127.67.0.1"
FLEET_SEED = 21
DEVICE_URN = "urn:hwfleet:device:"


class Clock:
    """The rate limiter's clock: moves only when a test says so."""

    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Rig:
    ctl: Controller
    fleet: SimFleet
    clock: Clock
    tmp: Path
    api: httpx.AsyncClient
    #: The last event id once the fleet was up: attacks must add nothing after it.
    baseline_event: int

    @property
    def host(self) -> str:
        return self.ctl.gateway.address[0]

    @property
    def port(self) -> int:
        return self.ctl.gateway.address[1]

    def uuids(self) -> list[str]:
        return [d.runtime.info.uuid for d in self.fleet.devices]

    def device(self, index: int = 0) -> SimulatedDevice:
        return self.fleet.devices[index]

    async def fleet_answers(self) -> None:
        """Every legitimate device answers ping, directly and through the REST API."""
        uuids = self.uuids()
        direct = await self.ctl.devices.ping_many(uuids, timeout=5)
        assert all(r["ok"] for r in direct.values()), direct
        reply = await self.api.post("/api/v1/devices/ping", json={"uuids": uuids, "timeout": 5})
        assert reply.status_code == 200, reply.text
        assert {u: r["ok"] for u, r in reply.json().items()} == dict.fromkeys(uuids, True)

    async def device_rows(self) -> set[str]:
        async with self.ctl.store.tx(readonly=True) as tx:
            return {r.uuid for r in await tx.devices.list()}

    async def task_rows(self) -> list[Any]:
        async with self.ctl.store.tx(readonly=True) as tx:
            return list(await tx.tasks.list())

    async def new_events(self) -> list[EventRecord]:
        async with self.ctl.store.tx(readonly=True) as tx:
            return list(await tx.events.list(after_id=self.baseline_event, limit=1000))

    async def keys(self) -> list[KeyRecord]:
        async with self.ctl.store.tx(readonly=True) as tx:
            return list(await tx.keys.list())

    def identity(self, name: str, device_uuid: str | None = None) -> AgentIdentity:
        return AgentIdentity.load_or_create(self.tmp / name, device_uuid or str(uuid.uuid4()))


def controller_settings(data_dir: Path, **overrides: Any) -> ServerSettings:
    values: dict[str, Any] = {
        "data_dir": str(data_dir),
        "agent_listen": "127.0.0.1:0",
        "api_listen": "127.0.0.1:0",
        "bus": "memory://",
        "enroll_password": PASSWORD,
        "call_timeout": 5.0,
        # These attacks test the enrollment limiter and the key rules, with up to 1,000
        # requests and 50 links from one source; the pacing of unidentified links
        # (tests/security/test_link_flood.py) would otherwise cut them short.
        "anonymous_links_per_source": 64,
        "anonymous_message_rate": 10_000.0,
        "anonymous_message_burst": 10_000,
        **overrides,
    }
    return ServerSettings(**values)


@pytest.fixture
async def rig(tmp_path: Path, deadline: float) -> AsyncIterator[Rig]:
    ctl = Controller(controller_settings(tmp_path / "controller"))
    await ctl.start()
    clock = Clock()
    ctl.keys.limiter = RateLimiter(clock=clock)
    host, port = ctl.gateway.address
    fleet = SimFleet(
        generate(3, seed=FLEET_SEED),
        host,
        port,
        seed=FLEET_SEED,
        reconnect_min=0.05,
        reconnect_max=0.5,
        data_dir=str(tmp_path / "sim"),
        enroll_password=PASSWORD,
    )
    api = httpx.AsyncClient(
        base_url=ctl.api_url, headers={"Authorization": f"Bearer {ctl.operator_token}"}, timeout=10
    )
    try:
        await fleet.start()
        assert await fleet.wait_connected(deadline) == 3
        async with ctl.store.tx(readonly=True) as tx:
            baseline = max((e.id for e in await tx.events.list(limit=1000)), default=0)
        rig = Rig(ctl, fleet, clock, tmp_path, api, baseline)
        await rig.fleet_answers()
        yield rig
    finally:
        await fleet.close()
        await api.aclose()
        await ctl.close()


# -- hand-rolled peers ---------------------------------------------------------------------


def anonymous_context() -> ssl.SSLContext:
    """TLS without a client certificate, verifying nothing: what anyone can open."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


class Wire:
    """One connection to the agent port speaking raw line-JSON (no hwfleet client code)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, rig: Rig, context: ssl.SSLContext | None, source: str = ATTACKER) -> Wire:
        async with asyncio.timeout(10):
            reader, writer = await asyncio.open_connection(
                rig.host, rig.port, ssl=context, local_addr=(source, 0), limit=STREAM_LIMIT
            )
        return cls(reader, writer)

    async def call(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        message_id = str(uuid.uuid4())
        line = {"version": "1", "id": message_id, "method": method, "params": params or {}}
        self.writer.write(json.dumps(line).encode() + b"\n")
        await self.writer.drain()
        async with asyncio.timeout(10):
            raw = await self.reader.readline()
        assert raw, f"{method}: the connection closed without a reply"
        reply: dict[str, Any] = json.loads(raw)
        assert reply.get("id") == message_id, reply
        return reply

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(ConnectionError, ssl.SSLError):
            await self.writer.wait_closed()


@contextlib.asynccontextmanager
async def wire(rig: Rig, context: ssl.SSLContext | None, source: str = ATTACKER) -> Any:
    peer = await Wire.open(rig, context, source)
    try:
        yield peer
    finally:
        await peer.close()


class RealAgent:
    """The real agent stack for one machine: identity, AgentTls (enrollment), StreamLink."""

    def __init__(
        self,
        rig: Rig,
        name: str,
        *,
        seed: int,
        address: str,
        password: str = "",
        token: str = "",
        target: tuple[str, int] | None = None,
        identity: AgentIdentity | None = None,
    ) -> None:
        self.runtime = runtime_for(generate(1, seed=seed).devices[0], 0, seed)
        self.uuid = self.runtime.info.uuid
        self.identity = identity or rig.identity(name, self.uuid)
        host, port = target or (rig.host, rig.port)
        tls = AgentTls(
            self.identity, host, port, password=password, token=token, local_address=address
        )
        self.link = StreamLink(
            self.runtime,
            host,
            port,
            ssl_provider=tls,
            local_address=address,
            reconnect_min=0.05,
            reconnect_max=0.5,
        )
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> RealAgent:
        self._task = asyncio.create_task(self.link.run())
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.link.stop()
        assert self._task is not None
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
        await self.runtime.tasks.close()

    async def connected(self, timeout: float = 10.0) -> None:
        async with asyncio.timeout(timeout):
            await self.link.connected.wait()

    def failed_with(self, text: str) -> Callable[[], bool]:
        return lambda: text in (self.link.last_error or "")


class BusTap:
    """A private copy of everything published on one exchange of the controller's bus."""

    def __init__(self, bus: Bus, exchange: str) -> None:
        self.bus, self.exchange = bus, exchange
        self.bodies: list[dict[str, Any]] = []
        self._changed = asyncio.Event()
        self._subscription: Subscription | None = None

    @classmethod
    async def open(cls, bus: Bus, exchange: str, pattern: str = "#") -> BusTap:
        tap = cls(bus, exchange)

        async def on_message(delivery: Delivery) -> None:
            tap.bodies.append(json.loads(delivery.body))
            tap._changed.set()

        tap._subscription = await bus.subscribe(exchange, pattern, on_message)
        return tap

    async def wait(self, predicate: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
        async with asyncio.timeout(10):
            while True:
                for body in self.bodies:
                    if predicate(body):
                        return body
                self._changed.clear()
                await self._changed.wait()

    async def settle(self, routing_key: str = "info") -> list[dict[str, Any]]:
        """Everything published before now (a sentinel behind it proves delivery), then stop."""
        marker = str(uuid.uuid4())
        await self.bus.publish(self.exchange, routing_key, {"sentinel": marker})
        await self.wait(lambda body: body.get("sentinel") == marker)
        await self.close()
        return [b for b in self.bodies if "sentinel" not in b]

    async def close(self) -> None:
        if self._subscription is not None:
            await self._subscription.cancel()
            self._subscription = None


def refusal(reply: dict[str, Any]) -> str:
    """``limited`` / ``wrong`` for an enrollment refusal, else the message (a test failure)."""
    assert "result" not in reply, reply
    msg = str(reply["error"]["msg"])
    if "too many failed enrollment attempts" in msg:
        return "limited"
    if "wrong enrollment password" in msg:
        return "wrong"
    return msg


# -- 1. an unenrolled client tries every method ---------------------------------------------

#: What the controller itself answers from an identified agent; all else is unknown to it.
CONTROLLER_SIDE = {methods.HANDSHAKE, methods.PING, methods.LOG, methods.TASK_STATUS}


def every_method() -> list[str]:
    names = {v for k, v in vars(methods).items() if k.isupper() and isinstance(v, str)}
    assert {"ping", "status", "log", "task_status", "scan", "decom.disk_erase"} <= names
    # The seed's spelling of the standby group, and a verb an attacker would guess.
    names |= {"standbye.prepare_image", "standbye.run_image", "run", "exec"}
    return sorted(names)


async def try_every_method(peer: Wire, claimed_uuid: str) -> None:
    """Each method, with params valid for it, claiming ``claimed_uuid``: all refused."""
    params = {
        "uuid": claimed_uuid,
        "serial": "SN-EVIL",
        "name": "evil",
        "task_id": str(uuid.uuid4()),
        "state": "complete",
        "result": {"erased": True},
        "level": "emerg",
        "msg": "pwned",
        "fields": {},
        "operationid": 1,
        "disks": ["/dev/sda"],
    }
    for method in every_method():
        reply = await peer.call(method, params)
        assert "result" not in reply, (method, reply)
        expected = "unauthorized" if method in CONTROLLER_SIDE else "unknown_method"
        assert reply["error"]["code"] == expected, (method, reply)


async def test_unenrolled_client_is_refused_every_method_and_nothing_is_recorded(
    rig: Rig,
) -> None:
    victim = rig.uuids()[0]
    victim_conn = rig.ctl.devices.get(victim)
    logs = await BusTap.open(rig.ctl.bus, "logging")
    attacker = rig.identity("attacker")
    async with wire(rig, anonymous_context()) as peer:
        await try_every_method(peer, victim)
        await try_every_method(peer, attacker.uuid)
        # A failed enrollment on the same link unlocks nothing.
        params = {"uuid": attacker.uuid, "csr": attacker.csr_pem(), "password": "Tr0ub4dor&3"}
        assert refusal(await peer.call("enroll", params)) == "wrong"
        await try_every_method(peer, victim)
        await try_every_method(peer, attacker.uuid)
    # Nor does a new link after the failed enrollment.
    async with wire(rig, anonymous_context()) as peer:
        await try_every_method(peer, attacker.uuid)

    assert await rig.device_rows() == set(rig.uuids())
    assert await rig.task_rows() == []
    assert await rig.new_events() == []
    assert attacker.uuid not in {k.device_uuid for k in await rig.keys()}
    agent_logs = [b for b in await logs.settle() if b.get("source") != "controller"]
    assert agent_logs == [], "an unidentified peer published a device log line"
    assert rig.ctl.devices.get(victim) is victim_conn, "the victim's session was displaced"
    assert sorted(rig.ctl.devices.online()) == sorted(rig.uuids())
    await rig.fleet_answers()


async def test_enrolling_does_not_upgrade_the_anonymous_link(rig: Rig) -> None:
    """Even a right enrollment leaves that link anonymous: the certificate is for the next one."""
    newcomer = rig.identity("newcomer")
    async with wire(rig, anonymous_context(), BYSTANDER) as peer:
        params = {"uuid": newcomer.uuid, "csr": newcomer.csr_pem(), "password": PASSWORD}
        accepted = await peer.call("enroll", params)
        assert accepted["result"]["state"] == "accepted"
        hs = await peer.call("handshake", {"uuid": newcomer.uuid, "serial": 1})
        assert hs["error"]["code"] == "unauthorized"
        ping = await peer.call("ping", {})
        assert ping["error"]["code"] == "unauthorized"
    assert rig.ctl.devices.get(newcomer.uuid) is None
    assert newcomer.uuid not in await rig.device_rows()
    await rig.fleet_answers()


async def test_idle_and_stalled_enrolling_links_are_closed(tmp_path: Path) -> None:
    """An unauthenticated peer cannot hold agent-port connections open at will."""
    ctl = Controller(controller_settings(tmp_path / "ctl", handshake_timeout=0.2))
    await ctl.start()
    try:
        host, port = ctl.gateway.address
        for says_hello in (False, True):
            reader, writer = await asyncio.open_connection(
                host, port, ssl=anonymous_context(), local_addr=(ATTACKER, 0)
            )
            if says_hello:  # an enrolling link gets (1 + 4) handshake timeouts, then no more
                line = {"version": "1", "id": "1", "method": "enroll.hello", "params": {}}
                writer.write(json.dumps(line).encode() + b"\n")
                await writer.drain()
                assert await reader.readline()
            async with asyncio.timeout(5):
                assert await reader.read() == b""  # closed by the controller, not by us
            writer.close()
    finally:
        await ctl.close()


# -- 2. a thousand wrong passwords from one source ------------------------------------------


async def test_a_thousand_wrong_passwords_are_rate_limited_per_source(rig: Rig) -> None:
    attacker = rig.identity("attacker")
    csr = attacker.csr_pem()
    verdicts: Counter[str] = Counter()
    async with wire(rig, anonymous_context()) as peer:
        for n in range(1000):
            params = {"uuid": attacker.uuid, "csr": csr, "password": f"guess-{n:04d}"}
            verdicts[refusal(await peer.call("enroll", params))] += 1
        # Once limited, even the right password is refused from this source.
        right = {"uuid": attacker.uuid, "csr": csr, "password": PASSWORD}
        assert refusal(await peer.call("enroll", right)) == "limited"
    burst = rig.ctl.keys.limiter.burst
    assert verdicts == {"wrong": burst, "limited": 1000 - burst}
    assert attacker.uuid not in {k.device_uuid for k in await rig.keys()}
    await rig.fleet_answers()

    # Another legitimate path (another source address) enrolls and connects at once.
    async with RealAgent(rig, "bystander", seed=501, address=BYSTANDER, password=PASSWORD) as ok:
        await ok.connected()
        assert (await rig.ctl.devices.ping(ok.uuid))["ok"]

    # A real agent behind the attacker's address waits for the window, then gets in.
    async with RealAgent(rig, "late", seed=502, address=ATTACKER, password=PASSWORD) as late:
        await wait_for(late.failed_with("too many failed enrollment attempts"))
        assert not late.identity.is_enrolled
        wait = rig.ctl.keys.limiter.retry_after(ATTACKER)
        assert 0 < wait <= 60
        rig.clock.now += wait + 0.01
        await late.connected()
        assert (await rig.ctl.devices.ping(late.uuid))["ok"]
    assert attacker.uuid not in {k.device_uuid for k in await rig.keys()}
    await rig.fleet_answers()


async def test_concurrent_guessing_does_not_outrun_the_limiter(rig: Rig) -> None:
    """1,000 guesses over 50 simultaneous connections: still only ``burst`` are compared."""
    attacker = rig.identity("attacker")
    csr = attacker.csr_pem()
    peers = [await Wire.open(rig, anonymous_context()) for _ in range(50)]

    async def guess(peer: Wire, start: int) -> list[str]:
        verdicts = []
        for n in range(start, start + 20):
            params = {"uuid": attacker.uuid, "csr": csr, "password": f"guess-{n:04d}"}
            verdicts.append(refusal(await peer.call("enroll", params)))
        return verdicts

    try:
        async with asyncio.timeout(60):
            results = await asyncio.gather(*(guess(p, 20 * i) for i, p in enumerate(peers)))
    finally:
        for peer in peers:
            await peer.close()
    burst = rig.ctl.keys.limiter.burst
    assert Counter(v for r in results for v in r) == {"wrong": burst, "limited": 1000 - burst}
    assert attacker.uuid not in {k.device_uuid for k in await rig.keys()}
    await rig.fleet_answers()


# -- 3. a used token replayed ---------------------------------------------------------------


async def test_used_enrollment_token_replayed_is_refused(rig: Rig) -> None:
    issued = await rig.api.post("/api/v1/keys/tokens", json={"ttl": 300})
    assert issued.status_code == 201, issued.text
    token = issued.json()["token"]
    async with RealAgent(rig, "first", seed=511, address=BYSTANDER, token=token) as first:
        await first.connected()
        # The same token again, from another machine (new uuid, new key): refused.
        thief = rig.identity("thief")
        with pytest.raises(RemoteError) as refused:
            await enroll(thief, rig.host, rig.port, token=token, local_address=ATTACKER)
        assert refused.value.code == "unauthorized"
        assert "used or expired token" in refused.value.msg
        assert not thief.is_enrolled
        # And from a fresh source address too: it is the token that is spent, not a limit.
        with pytest.raises(RemoteError, match="used or expired token"):
            await enroll(thief, rig.host, rig.port, token=token, local_address="127.66.0.2")
        keys = await rig.keys()
        assert thief.uuid not in {k.device_uuid for k in keys}
        [first_key] = [k for k in keys if k.device_uuid == first.uuid]
        assert first_key.state == "accepted" and first_key.source == "token"
        assert (await rig.ctl.devices.ping(first.uuid))["ok"]
    await rig.fleet_answers()


# -- 4. a client certificate from another CA ------------------------------------------------


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def rogue_client_cert(
    directory: Path, device_uuid: str, issuer: x509.Name | None
) -> ssl.SSLContext:
    """A device certificate for ``device_uuid`` under a CA of the attacker's own.

    ``issuer``: the rogue CA's subject (e.g. a copy of the real CA's), or None
    for a self-signed leaf. Otherwise it looks exactly like a real device
    certificate: URI SAN, clientAuth only.
    """
    now = dt.datetime.now(dt.UTC)
    leaf_key = ed25519.Ed25519PrivateKey.generate()
    if issuer is None:
        signer: Any = leaf_key
        issuer_name = _name(device_uuid)
        algorithm = None
        chain: list[x509.Certificate] = []
    else:
        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca_cert = (
            x509.CertificateBuilder()
            .subject_name(issuer)
            .issuer_name(issuer)
            .public_key(ca_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(hours=1))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .sign(ca_key, hashes.SHA256())
        )
        signer, issuer_name, algorithm, chain = ca_key, issuer, hashes.SHA256(), [ca_cert]
    leaf = (
        x509.CertificateBuilder()
        .subject_name(_name(device_uuid))
        .issuer_name(issuer_name)
        .public_key(leaf_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.UniformResourceIdentifier(DEVICE_URN + device_uuid)]),
            critical=False,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .sign(signer, algorithm)
    )
    directory.mkdir(parents=True)
    key_path, cert_path = directory / "rogue.key", directory / "rogue.crt"
    key_path.write_bytes(
        leaf_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    cert_path.write_bytes(
        b"".join(c.public_bytes(serialization.Encoding.PEM) for c in [leaf, *chain])
    )
    context = anonymous_context()
    context.load_cert_chain(cert_path, key_path)
    return context


async def mtls_verdict(rig: Rig, context: ssl.SSLContext, claimed_uuid: str) -> str:
    """``handshake-failed:…``, ``refused-at-read:…`` / ``closed`` (TLS 1.3 tells the client
    after its handshake), or ``answered:…`` (the attack got in)."""
    params = {"uuid": claimed_uuid, "serial": "SN-EVIL"}
    hs = {"version": "1", "id": "hs", "method": "handshake", "params": params}
    try:
        async with asyncio.timeout(10):
            reader, writer = await asyncio.open_connection(
                rig.host, rig.port, ssl=context, local_addr=(ATTACKER, 0)
            )
    except (ssl.SSLError, ConnectionError) as exc:
        return f"handshake-failed:{type(exc).__name__}:{exc}"
    try:
        writer.write(json.dumps(hs).encode() + b"\n")
        async with asyncio.timeout(10):
            await writer.drain()
            line = await reader.readline()
    except (ssl.SSLError, ConnectionError) as exc:
        return f"refused-at-read:{type(exc).__name__}:{exc}"
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError, ssl.SSLError):
            await writer.wait_closed()
    return f"answered:{line!r}" if line else "closed"


@pytest.mark.parametrize("tls", ["1.2", "1.3"])
@pytest.mark.parametrize("issuer", ["rogue-ca", "same-dn-as-real-ca", "self-signed"])
async def test_client_certificate_from_another_ca_fails_the_handshake(
    rig: Rig, issuer: str, tls: str
) -> None:
    victim = rig.uuids()[0]
    victim_conn = rig.ctl.devices.get(victim)
    name = {
        "rogue-ca": _name("hwfleet controller CA rogue"),
        "same-dn-as-real-ca": rig.ctl.admission.ca.certificate.subject,
        "self-signed": None,
    }[issuer]
    context = rogue_client_cert(rig.tmp / "rogue", victim, name)
    version = ssl.TLSVersion.TLSv1_2 if tls == "1.2" else ssl.TLSVersion.TLSv1_3
    context.minimum_version = context.maximum_version = version
    verdict = await mtls_verdict(rig, context, victim)
    if tls == "1.2":
        assert verdict.startswith("handshake-failed:"), verdict
    else:  # the client finishes first; the server's refusal arrives at the first read
        assert verdict.startswith(("handshake-failed:", "refused-at-read:")) or (
            verdict == "closed"
        ), verdict
    assert rig.ctl.devices.get(victim) is victim_conn
    assert await rig.device_rows() == set(rig.uuids())
    assert await rig.new_events() == []
    await rig.fleet_answers()


# -- 5. a revoked device --------------------------------------------------------------------


@pytest.mark.parametrize("how", ["reject-ctl.keys", "delete-rest", "reject-rest"])
async def test_revoked_device_is_dropped_at_once_and_refused_on_reconnect(
    rig: Rig, how: str
) -> None:
    doomed = rig.device(0)
    doomed_uuid = doomed.runtime.info.uuid
    assert doomed.identity is not None
    conn = rig.ctl.devices.get(doomed_uuid)
    assert conn is not None and not conn.session.closed
    [key] = [k for k in await rig.ctl.keys.list_keys() if k["device_uuid"] == doomed_uuid]
    if how == "reject-ctl.keys":
        await rig.ctl.keys.reject(key["id"])
    elif how == "delete-rest":
        assert (await rig.api.delete(f"/api/v1/keys/{key['id']}")).status_code == 200
    else:
        assert (await rig.api.post(f"/api/v1/keys/{key['id']}/reject")).status_code == 200
    # At once: by the time the operator's call returns, the session is closed.
    assert conn.session.closed
    assert not (await rig.ctl.devices.ping(doomed_uuid, timeout=2))["ok"]
    await wait_for(lambda: doomed_uuid not in rig.ctl.devices.online())

    # Its reconnects (the sim keeps trying with its certificate) are refused.
    link = doomed.link
    assert isinstance(link, StreamLink)
    await wait_for(lambda: "key is not accepted" in (link.last_error or ""))
    assert link.connects == 1 and not link.connected.is_set()
    # And so is a hand-made reconnect with the revoked certificate.
    async with wire(rig, enrolled_context(doomed.identity), ATTACKER) as peer:
        reply = await peer.call("handshake", {"uuid": doomed_uuid, "serial": 1})
        assert reply["error"]["code"] == "refused"
        assert (await peer.call("ping", {}))["error"]["code"] == "unauthorized"
    assert rig.ctl.devices.get(doomed_uuid) is None

    action = "deleted" if how.startswith("delete") else "rejected"
    routing_keys = [e.routing_key for e in await rig.new_events()]
    assert f"enrollment.{action}.{doomed_uuid}" in routing_keys
    assert f"device.offline.{doomed_uuid}" in routing_keys
    survivors = rig.uuids()[1:]
    results = await rig.ctl.devices.ping_many(survivors, timeout=5)
    assert all(r["ok"] for r in results.values()), results
    assert sorted(rig.ctl.devices.online()) == sorted(survivors)


async def test_key_revoked_while_its_handshake_is_being_checked_gets_no_session(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The operator revokes between the key check and the attach: the link still dies."""
    identity = rig.identity("racer")
    await enroll(identity, rig.host, rig.port, password=PASSWORD, local_address=BYSTANDER)
    checked, resume = asyncio.Event(), asyncio.Event()
    check_session = rig.ctl.keys.check_session

    async def slow_check(peer: Any) -> bool:
        verdict = await check_session(peer)
        checked.set()
        await resume.wait()  # the store answered "accepted"; the operator acts now
        return verdict

    monkeypatch.setattr(rig.ctl.keys, "check_session", slow_check)
    async with wire(rig, enrolled_context(identity), BYSTANDER) as peer:
        params = {"uuid": identity.uuid, "serial": 1}
        hs = {"version": "1", "id": "hs", "method": "handshake", "params": params}
        peer.writer.write(json.dumps(hs).encode() + b"\n")
        await peer.writer.drain()
        async with asyncio.timeout(10):
            await checked.wait()
        [key] = [k for k in await rig.keys() if k.device_uuid == identity.uuid]
        await rig.ctl.keys.reject(key.id)
        resume.set()
        line = b""
        async with asyncio.timeout(10):
            with contextlib.suppress(ConnectionError, ssl.SSLError):
                line = await peer.reader.readline()
        assert b'"result"' not in line, "a revoked key got a session"
    await wait_for(lambda: rig.ctl.devices.get(identity.uuid) is None)
    assert not (await rig.ctl.devices.ping(identity.uuid, timeout=2))["ok"]
    await rig.fleet_answers()


# -- 6. a device claiming another enrolled device's uuid ------------------------------------


async def test_device_claiming_an_enrolled_uuid_is_denied_and_the_original_keeps_working(
    rig: Rig,
) -> None:
    victim = rig.device(0)
    victim_uuid = victim.runtime.info.uuid
    victim_conn = rig.ctl.devices.get(victim_uuid)
    events = await BusTap.open(rig.ctl.bus, "events", "enrollment.#")
    thief = rig.identity("thief", victim_uuid)  # a new key, the right password
    try:
        with pytest.raises(RemoteError) as denied:
            await enroll(thief, rig.host, rig.port, password=PASSWORD, local_address=ATTACKER)
        assert denied.value.code == "refused"
        assert "already has an accepted key" in denied.value.msg
        announced = await events.wait(lambda b: b["key"] == f"enrollment.denied.{victim_uuid}")
        assert announced["data"]["fingerprint"] == thief.fingerprint
    finally:
        await events.close()
    assert not thief.is_enrolled
    assert victim.identity is not None
    states = {k.fingerprint: k.state for k in await rig.keys() if k.device_uuid == victim_uuid}
    assert states == {victim.identity.fingerprint: "accepted", thief.fingerprint: "denied"}
    recorded = [e for e in await rig.new_events() if e.device_uuid == victim_uuid]
    assert [e.routing_key for e in recorded] == [f"enrollment.denied.{victim_uuid}"]
    # Trying again with the denied key stays refused; the anonymous link cannot pose either.
    with pytest.raises(RemoteError, match="denied"):
        await enroll(thief, rig.host, rig.port, password=PASSWORD, local_address=ATTACKER)
    async with wire(rig, anonymous_context()) as peer:
        reply = await peer.call("handshake", {"uuid": victim_uuid, "serial": 1})
        assert reply["error"]["code"] == "unauthorized"

    # The original was never displaced, answers, and can still reconnect with its key.
    assert rig.ctl.devices.get(victim_uuid) is victim_conn
    await rig.fleet_answers()
    link = victim.link
    assert isinstance(link, StreamLink) and link.connects == 1
    assert rig.ctl.devices.drop(victim_uuid, "test: reconnect")
    await wait_for(lambda: link.connects == 2 and link.connected.is_set())
    await rig.fleet_answers()


# -- 7. an enrolled agent pointed at an impostor controller ---------------------------------


@pytest.fixture
async def impostor(tmp_path: Path) -> AsyncIterator[Controller]:
    """A complete, real controller with a CA of its own — and the same enrollment password."""
    ctl = Controller(controller_settings(tmp_path / "impostor"))
    await ctl.start()
    try:
        yield ctl
    finally:
        await ctl.close()


async def test_enrolled_agent_refuses_an_impostor_controller(
    rig: Rig, impostor: Controller
) -> None:
    device = rig.device(0)
    assert device.identity is not None
    pinned = device.identity.pinned_ca_fingerprint
    cert_before = device.identity.cert_path.read_bytes()
    assert pinned == rig.ctl.admission.ca.fingerprint() != impostor.admission.ca.fingerprint()
    # The same identity (same data dir, same pin), pointed at the impostor's gateway.
    async with RealAgent(
        rig,
        "redirected",
        seed=FLEET_SEED,
        address=BYSTANDER,
        password=PASSWORD,
        target=impostor.gateway.address,
        identity=device.identity,
    ) as redirected:
        assert redirected.uuid == device.runtime.info.uuid
        await wait_for(redirected.failed_with("certificate verify failed"))
        assert redirected.link.connects == 0
    assert impostor.devices.online() == []
    # It never fell back to enrolling there (which would have sent the password).
    assert await impostor.keys.list_keys() == []
    assert len(impostor.keys.limiter) == 0
    assert device.identity.pinned_ca_fingerprint == pinned
    assert device.identity.cert_path.read_bytes() == cert_before
    await rig.fleet_answers()


async def test_agent_with_a_pin_but_no_certificate_refuses_to_enroll_at_an_impostor(
    rig: Rig, impostor: Controller
) -> None:
    """A device whose key was deleted keeps its pin: enrolling elsewhere fails before the secret."""
    identity = rig.identity("repinned")
    await enroll(identity, rig.host, rig.port, password=PASSWORD, local_address=BYSTANDER)
    pinned = identity.pinned_ca_fingerprint
    identity.forget_certificate()
    assert not identity.is_enrolled and identity.pinned_ca_fingerprint == pinned
    with pytest.raises(FirstContactError, match="does not match the expected"):
        host, port = impostor.gateway.address
        await enroll(identity, host, port, password=PASSWORD, local_address=BYSTANDER)
    # The impostor shares the password: had it been sent, a key would be accepted there.
    assert await impostor.keys.list_keys() == []
    assert len(impostor.keys.limiter) == 0
    assert identity.pinned_ca_fingerprint == pinned and not identity.is_enrolled
    await rig.fleet_answers()


# -- 8. plaintext on the TLS agent port -----------------------------------------------------

PLAINTEXT = {
    "ping": b'{"version": "1", "id": "p", "method": "ping", "params": {}}\n',
    "enroll.hello": b'{"version": "1", "id": "h", "method": "enroll.hello", "params": {}}\n',
    "http": b"GET /api/v1/devices HTTP/1.1\r\nHost: x\r\n\r\n",
    "garbage-64k": b"\x00\xff" * 32768,
}


@pytest.mark.parametrize("payload", sorted(PLAINTEXT))
async def test_plaintext_on_the_tls_port_gets_no_result(rig: Rig, payload: str) -> None:
    victim = rig.uuids()[0]
    data = PLAINTEXT[payload]
    if payload == "ping":  # also try to pose as a device in clear
        hs = {"version": "1", "id": "x", "method": "handshake", "params": {"uuid": victim}}
        data = json.dumps(hs).encode() + b"\n" + data
    reader, writer = await asyncio.open_connection(rig.host, rig.port, local_addr=(ATTACKER, 0))
    try:
        writer.write(data)
        with contextlib.suppress(ConnectionError):
            await writer.drain()
        received = b""
        async with asyncio.timeout(10):
            with contextlib.suppress(ConnectionError):
                while chunk := await reader.read(65536):  # until the server closes
                    received += chunk
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()
    for marker in (b"{", b'"result"', b'"error"', b'"version"', b"BEGIN CERTIFICATE", b"HTTP/"):
        assert marker not in received, received
    assert len(received) < 64, "at most a TLS alert"
    # The controller keeps serving: a new TLS client is answered, the fleet too.
    async with wire(rig, anonymous_context(), BYSTANDER) as peer:
        hello = await peer.call("enroll.hello")
        assert hello["result"]["ca_fingerprint"] == rig.ctl.admission.ca.fingerprint()
    assert rig.ctl.devices.get(victim) is not None
    await rig.fleet_answers()


# -- 9. secrets never reach a log record ----------------------------------------------------


def record_texts(record: logging.LogRecord) -> list[str]:
    """Everything a handler could write out of one record."""
    texts = [record.getMessage(), repr(record.args), str(record.msg)]
    if record.exc_info:
        texts.append(logging.Formatter().formatException(record.exc_info))
    if record.exc_text:
        texts.append(record.exc_text)
    if record.stack_info:
        texts.append(record.stack_info)
    texts.extend(repr(value) for value in vars(record).values())
    return texts


def key_material(paths: list[Path]) -> list[str]:
    """Each private key PEM whole, and each of its base64 lines (any fragment is a leak)."""
    found: list[str] = []
    for path in paths:
        pem = path.read_text()
        assert "PRIVATE KEY" in pem, path
        found.append(pem.strip())
        found.extend(line for line in pem.splitlines() if line and not line.startswith("-----"))
    return found


async def test_secrets_never_appear_in_log_records(
    rig: Rig, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="hwfleet")
    near_miss = PASSWORD + "!"
    issued = await rig.api.post("/api/v1/keys/tokens", json={"ttl": 300})
    token = issued.json()["token"]
    token_too = await rig.ctl.keys.create_token(ttl=300)
    forged = "hwfe_" + "A" * 43

    # Successful enrollments: password, REST-issued token, service-issued token.
    async with (
        RealAgent(rig, "by-password", seed=531, address=BYSTANDER, password=PASSWORD) as a,
        RealAgent(rig, "by-token", seed=532, address=BYSTANDER, token=token) as b,
        RealAgent(rig, "by-token-2", seed=533, address=BYSTANDER, token=token_too) as c,
    ):
        for agent in (a, b, c):
            await agent.connected()
    # Failed ones: near miss, replayed token, forged token, uuid theft with the right password.
    loser = rig.identity("loser")
    for kwargs in ({"password": near_miss}, {"token": token}, {"token": forged}):
        with pytest.raises(RemoteError, match="enrollment refused"):
            await enroll(loser, rig.host, rig.port, local_address=ATTACKER, **kwargs)  # type: ignore[arg-type]
    thief = rig.identity("thief", rig.uuids()[0])
    with pytest.raises(RemoteError, match="already has an accepted key"):
        await enroll(thief, rig.host, rig.port, password=PASSWORD, local_address=ATTACKER)
    # Raw requests an agent would never send: a bad CSR, an unknown field, the secret
    # where the uuid goes. Replies never echo the password or token fields.
    async with wire(rig, anonymous_context()) as peer:
        csr = loser.csr_pem()
        for params in (
            {
                "uuid": loser.uuid,
                "csr": "-----BEGIN CERTIFICATE REQUEST-----",
                "password": PASSWORD,
            },
            {"uuid": loser.uuid, "csr": csr, "password": near_miss, "extra": PASSWORD},
            {"uuid": loser.uuid, "csr": csr, "token": token, "password": "x" * 2000},
        ):
            reply = await peer.call("enroll", params)
            assert "result" not in reply
            assert PASSWORD not in json.dumps(reply) and token not in json.dumps(reply)
        assert "result" not in await peer.call("enroll", {"uuid": PASSWORD, "csr": csr})

    secrets = [PASSWORD, near_miss, token, token_too, forged, rig.ctl.operator_token]
    pki = rig.tmp / "controller" / "pki"
    keys = [pki / "ca.key", pki / "server.key", *sorted(rig.tmp.glob("**/pki/agent.key"))]
    assert len(keys) >= 2 + 3 + 3 + 2  # controller, fleet, new agents, loser and thief
    secrets += key_material(keys)
    records = caplog.records
    assert any("refused" in r.getMessage() for r in records), "refusals are logged"
    assert any("enrollment of device" in r.getMessage() for r in records)
    for record in records:
        for text in record_texts(record):
            assert "PRIVATE KEY" not in text, record
            for secret in secrets:
                assert secret not in text, (record.name, record.getMessage())
    await rig.fleet_answers()
