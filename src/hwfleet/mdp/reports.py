"""Periodic reports to the monitoring host (seed 002: "sends it over UDP ... over time").

The agent runs its report operations every ``interval`` seconds and sends the entries,
signed like a reply, from its endpoint's address to the monitoring host. The
controller's :class:`ReportCollector` accepts a report only under the key it holds for
the sender's address in ``.known_machines`` (same window and nonce rules as requests)
and keeps the latest one per machine in ``<data-dir>/mdp_reports/<ip>.json``, which
``hwfleet mdp status`` shows.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hwfleet.mdp import wire
from hwfleet.mdp.keys import KeyFileError, KnownMachines
from hwfleet.mdp.replay import NonceCache
from hwfleet.mdp.split import pack_reply
from hwfleet.trust.files import write_private
from hwfleet.types import parse_host_port

if TYPE_CHECKING:
    from hwfleet.mdp.endpoint import MdpEndpoint

log = logging.getLogger(__name__)

REPORTS_DIR = "mdp_reports"


class Reporter:
    """Sends a report now and then every ``interval`` seconds until closed."""

    def __init__(
        self, endpoint: MdpEndpoint, to: str, interval: float, operations: tuple[str, ...]
    ) -> None:
        self.endpoint = endpoint
        self.to = parse_host_port(to)
        self.interval = interval
        self.operations = operations
        self.sent = 0
        self._task: asyncio.Task[None] | None = None

    def start(self, delay: float = 0.0) -> None:
        """Report after ``delay`` seconds, then every interval."""
        self._task = asyncio.create_task(self._loop(delay), name="mdp-reporter")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def report_once(self) -> int:
        """Run the operations and send the report; returns the datagrams sent."""
        ctx = self.endpoint.context
        entries = [await ctx.operations.run(ctx, name, None) for name in self.operations]
        machine = ctx.runtime.info.uuid if ctx.runtime is not None else ""
        base = {
            "status": all(e["status"] for e in entries),
            "version": wire.V2,
            "report": True,
            "machine": machine,
        }
        sent = 0
        for datagram in pack_reply(base, entries, self.endpoint.key):
            sent += self.endpoint.send(datagram, self.to)
        self.sent += sent
        return sent

    async def _loop(self, delay: float) -> None:
        await asyncio.sleep(delay)  # a schedule, not a synchronisation
        while True:
            try:
                await self.report_once()
            except Exception:  # a failing report must not stop the next one
                log.exception("MDP report to %s:%d failed", *self.to)
            await asyncio.sleep(self.interval)


class _CollectorProtocol(asyncio.DatagramProtocol):
    def __init__(self, collector: ReportCollector) -> None:
        self.collector = collector

    def datagram_received(self, data: bytes, addr: tuple[str | Any, ...]) -> None:
        self.collector.received(data, str(addr[0]))


class ReportCollector:
    """The monitoring host's receiver; ``updated`` is set after each stored report."""

    def __init__(self, data_dir: str, bind: str, port: int) -> None:
        self.known = KnownMachines(data_dir)
        self.root = Path(data_dir) / REPORTS_DIR
        self.bind, self.port = bind, port
        self.counters: Counter[str] = Counter()
        self.updated = asyncio.Event()
        #: Set after every datagram, stored or dropped.
        self.activity = asyncio.Event()
        self._nonces = NonceCache()
        self._transport: asyncio.DatagramTransport | None = None

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._transport, _ = await loop.create_datagram_endpoint(
            lambda: _CollectorProtocol(self), local_addr=(self.bind, self.port)
        )
        self.port = int(self._transport.get_extra_info("sockname")[1])

    async def close(self) -> None:
        if self._transport is not None:
            self._transport.close()

    def received(self, data: bytes, ip: str) -> None:
        self.counters["received"] += 1
        reason = self._store(data, ip)
        if reason:
            self.counters[reason] += 1
        else:
            self.counters["stored"] += 1
            self.updated.set()
        self.activity.set()

    def _store(self, data: bytes, ip: str) -> str | None:
        try:
            obj = wire.decode(data)
            key = self.known.get(ip)
        except (wire.WireError, KeyFileError, ValueError) as exc:
            return getattr(exc, "reason", "malformed")
        if key is None:
            return "unknown_machine"
        if obj.get("report") is not True or not isinstance(obj.get("operations"), list):
            return "malformed"
        now = time.time()
        try:
            _, nonce = wire.check_fresh(obj, now, float("inf"))
            if not wire.verify(key, obj):
                return "bad_key"
            wire.check_fresh(obj, now)
        except wire.WireError as exc:
            return exc.reason
        if reason := self._nonces.admit(nonce, now):
            return reason
        self._merge(ip, obj, now)
        return None

    def _merge(self, ip: str, obj: dict[str, Any], now: float) -> None:
        """Keep the latest entry of each operation (a split report arrives in parts)."""
        path = self.root / f"{self.known.path(ip).stem}.json"
        previous: dict[str, Any] = {}
        with contextlib.suppress(FileNotFoundError, ValueError):
            previous = json.loads(path.read_text(encoding="utf-8"))
        operations = dict(previous.get("operations", {}))
        for entry in obj["operations"]:
            if isinstance(entry, dict) and isinstance(entry.get("name"), str):
                operations[entry["name"]] = entry
        doc = {
            "ip": ip,
            "machine": str(obj.get("machine", ""))[:64],
            "ts": obj["ts"],
            "received_at": round(now, 3),
            "operations": operations,
        }
        self.root.mkdir(parents=True, exist_ok=True)
        write_private(path, json.dumps(doc, sort_keys=True).encode("utf-8"))


def latest_reports(data_dir: str) -> list[dict[str, Any]]:
    """Every machine's latest report, by address."""
    root = Path(data_dir) / REPORTS_DIR
    out = []
    for path in sorted(root.glob("*.json")) if root.is_dir() else []:
        with contextlib.suppress(ValueError, OSError):
            out.append(json.loads(path.read_text(encoding="utf-8")))
    return out
