"""The controller's side of key custody: fetch each enrolled device's key, mirror it to disk.

When a device attaches, the controller asks it for its diagnostics key with ``mdp.key``
over the authenticated session and records it in ``<data-dir>/.known_machines/<ip>.txt``
under the address the device connected from (the address its endpoint answers on). A
device whose endpoint is off, or an older agent, answers with an error: nothing is
recorded and the device is otherwise unaffected.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Protocol

from hwfleet.errors import ProtocolError
from hwfleet.mdp.agent_commands import KEY_METHOD
from hwfleet.mdp.keys import KnownMachines, parse_key


class Connection(Protocol):
    """The controller's view of an attached device (``controller.devices.Connection``)."""

    @property
    def uuid(self) -> str: ...

    @property
    def ipaddr(self) -> str: ...

    @property
    def session(self) -> Any: ...


log = logging.getLogger(__name__)


class KeyCustody:
    def __init__(self, data_dir: str, timeout: float = 10.0) -> None:
        self.known = KnownMachines(data_dir)
        self.timeout = timeout
        self._tasks: set[asyncio.Task[None]] = set()
        #: Set each time a key was recorded (tests and ``mdp`` wait on it).
        self.recorded = asyncio.Event()

    def on_attach(self, conn: Connection) -> None:
        task = asyncio.create_task(self._fetch(conn), name=f"mdp-key-{conn.uuid}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _fetch(self, conn: Connection) -> None:
        try:
            reply = await conn.session.call(KEY_METHOD, {}, self.timeout)
            key = parse_key(str(reply.get("key", "")), f"{conn.uuid}'s mdp.key reply")
            if self.known.put(conn.ipaddr, key):
                log.info("diagnostics key of %s recorded for %s", conn.uuid, conn.ipaddr)
            self.recorded.set()
        except (ProtocolError, ValueError, TimeoutError, ConnectionError) as exc:
            log.debug("no diagnostics key from %s: %s", conn.uuid, exc)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
