"""The controller's BMC service: set a node's BMC, then power, read sensors and the SEL.

Every call decrypts the node's record, builds a driver, runs the operation in a
bounded worker pool with a deadline, and records the outcome on the node: the latest
error (scrubbed) until a call succeeds. Nothing here ever returns or logs credentials.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit

from hwfleet.oob.driver import BmcAddress, BmcDriver, BmcError, PowerAction
from hwfleet.oob.drivers import load_driver
from hwfleet.oob.errors import scrub
from hwfleet.oob.pollers import PollerAdmin
from hwfleet.oob.redfish_poll import RedfishPoller
from hwfleet.oob.vault import Vault, VaultError
from hwfleet.store import Store
from hwfleet.store.bmcs import BmcRepository
from hwfleet.store.pollers import PollerRepository

if TYPE_CHECKING:
    from hwfleet.oob.fwjob import FirmwareJobs

log = logging.getLogger(__name__)
T = TypeVar("T")


class NoBmcError(LookupError):
    """The node has no BMC record."""


def utcnow() -> datetime:
    return datetime.now(UTC)


def check_address(address: BmcAddress) -> BmcAddress:
    """Refuse an address that cannot work or would leak: e.g. a password inside a URL."""
    if address.driver == "redfish":
        parts = urlsplit(address.address)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise BmcError("bad_input", "a Redfish address is a URL: https://host[:port]")
        if parts.username or parts.password:
            raise BmcError(
                "bad_input", "put the credentials in --username/--password, not in the URL"
            )
    elif not address.address or "/" in address.address or " " in address.address:
        raise BmcError("bad_input", f"a {address.driver} address is a host name or IP address")
    if address.driver == "snmp":
        from hwfleet.oob.snmp import check_v3

        check_v3(address)
    elif address.priv_password or address.auth_protocol or address.priv_protocol:
        raise BmcError("bad_input", "SNMPv3 settings are for an SNMP BMC (--snmp)")
    if not 0 <= address.port <= 65535:
        raise BmcError("bad_input", f"port {address.port} is not a TCP/UDP port")
    load_driver(address.driver)
    return address


class OobService:
    """BMC records and operations; shared by the REST API, the pollers and the task channel."""

    def __init__(self, store: Store, vault: Vault, *, timeout: float, workers: int) -> None:
        self.store = store
        self.vault = vault
        self.timeout = timeout
        self.pollers = PollerAdmin(store)
        #: Sessions drivers keep between calls (pyghmi's, one per BMC).
        self._sessions: dict[str, Any] = {}
        #: Called when pollers were added or changed (the worker looks for due ones at once).
        self.on_change: Callable[[], None] = lambda: None
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="bmc")
        #: The Redfish poll path: one shared asyncio HTTP client, no thread per poll.
        self._redfish = RedfishPoller(timeout=timeout)
        #: Firmware/BIOS applies as task rows (set by the controller; None in bare use).
        self.firmware_jobs: FirmwareJobs | None = None

    async def redfish_poll(self, address: BmcAddress, kind: str) -> Any:
        """One Redfish poll through the shared client; every request bounded by ``timeout``."""
        # No deadline around the whole poll: each request has its own (``timeout``), and a
        # timer per poll more is CPU the 1 ms budget does not have (bench/pollers.py).
        return await self._redfish.poll(address, kind)

    async def close(self) -> None:
        await self._redfish.close()
        # Threads stuck on a dead BMC end on their socket timeouts; do not wait for them.
        self._pool.shutdown(wait=False, cancel_futures=True)

    async def set_bmc(self, node: str, address: BmcAddress) -> dict[str, Any]:
        check_address(address)
        cls = load_driver(address.driver)
        sealed = self.vault.seal(node, address)
        now = utcnow()
        async with self.store.tx() as tx:
            await BmcRepository(tx.conn).put(node, address.driver, sealed, now)
            pollers = PollerRepository(tx.conn)
            for kind, interval in cls.poller_defaults.items():
                await pollers.ensure(node, kind, interval, now, [])
        self.on_change()
        log.info("BMC of %s set (%s at %s)", node, address.driver, address.address)
        return await self.describe(node)

    async def describe(self, node: str) -> dict[str, Any]:
        """The node's BMC as the API shows it: no username, no password."""
        async with self.store.tx(readonly=True) as tx:
            record = await BmcRepository(tx.conn).get(node)
        if record is None:
            raise NoBmcError(f"node {node} has no BMC (set one with `hwfleet bmc set`)")
        try:
            public = self.vault.unseal(node, record.sealed).public()
        except VaultError as exc:
            public = {"driver": record.driver, "error": str(exc)}
        return {
            "node": node,
            **public,
            "last_error": record.last_error,
            "updated_at": record.updated_at.isoformat(),
        }

    async def list_bmcs(self) -> list[dict[str, Any]]:
        async with self.store.tx(readonly=True) as tx:
            records = await BmcRepository(tx.conn).list()
        return [{"node": r.node, "driver": r.driver, "last_error": r.last_error} for r in records]

    async def delete_bmc(self, node: str) -> bool:
        async with self.store.tx() as tx:
            await PollerRepository(tx.conn).delete_node(node)
            return await BmcRepository(tx.conn).delete(node)

    async def address(self, node: str) -> BmcAddress:
        async with self.store.tx(readonly=True) as tx:
            record = await BmcRepository(tx.conn).get(node)
        if record is None:
            raise NoBmcError(f"node {node} has no BMC (set one with `hwfleet bmc set`)")
        try:
            return self.vault.unseal(node, record.sealed)
        except VaultError as exc:
            raise BmcError("auth", str(exc)) from None

    async def run(
        self,
        node: str,
        work: Callable[[BmcDriver], T],
        *,
        record: bool = True,
        deadline: float | None = None,
    ) -> T:
        """``work(driver)`` in the pool under the deadline; the node's error updated."""
        address = await self.address(node)
        try:
            result = await self.run_at(address, work, deadline=deadline)
        except BmcError as exc:
            if record:
                await self._record(node, str(exc))
            raise
        if record:
            await self._record(node, None)
        return result

    async def run_at(
        self, address: BmcAddress, work: Callable[[BmcDriver], T], *, deadline: float | None = None
    ) -> T:
        cls = load_driver(address.driver)

        def call() -> T:
            driver = cls(address, timeout=self.timeout, sessions=self._sessions)
            try:
                return work(driver)
            finally:
                try:
                    driver.close()
                except Exception:  # a failed logout must not hide the result
                    log.debug("closing the %s driver failed", address.driver)

        loop = asyncio.get_running_loop()
        try:
            # Twice the driver's own timeout: it retries a connect once before failing.
            return await asyncio.wait_for(
                loop.run_in_executor(self._pool, call), deadline or 2 * self.timeout + 1
            )
        except TimeoutError:
            raise BmcError(
                "timeout", f"{address.driver} BMC {address.address} did not answer in time"
            ) from None
        except BmcError as exc:
            raise BmcError(exc.kind, scrub(exc.message, address)) from None
        except Exception as exc:  # a driver bug: still a clean error on the node
            log.warning("%s driver failed: %s", address.driver, scrub(repr(exc), address))
            raise BmcError("protocol", scrub(f"{type(exc).__name__}: {exc}", address)) from None

    async def _record(self, node: str, error: str | None) -> None:
        async with self.store.tx() as tx:
            await BmcRepository(tx.conn).set_error(node, error, utcnow())

    async def power(self, node: str, action: PowerAction) -> str:
        return await self.run(node, lambda d: d.power(action))

    async def sel(self, node: str) -> Any:
        return await self.run(node, lambda d: d.poll("sel"))

    async def sensors(self, node: str) -> Any:
        return await self.run(node, lambda d: d.poll("sdr"))

    async def firmware_plan(self, node: str, spec: Any) -> dict[str, Any]:
        """``decom.firmware_secure`` with ``dry_run``: the plan, nothing changed. Applying a
        spec is a tracked task (:class:`hwfleet.oob.fwjob.FirmwareJobs`)."""
        from hwfleet.oob.firmware import dry_run, parse_spec

        parsed = parse_spec(spec)
        report = await self.run(node, lambda d: dry_run(d, parsed))
        return {"node": node, **report}
