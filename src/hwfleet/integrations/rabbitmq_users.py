"""Per-device RabbitMQ users: create one per enrolled AMQP device, delete it on revocation.

Each device gets the user ``hwfleet-device-<uuid>`` with a fresh random
password (``secrets.token_urlsafe(32)``) and permissions on its own resources
only (:func:`grants`): it may declare and consume its two exclusive queues,
bind them to ``agents`` (topic permission: only its own uuid as the key) and
``devicescan``, and publish only to ``uplink`` under keys that start with its
uuid (topic permission). It cannot touch another device's queues, publish on
the default exchange, or claim another uuid.

Two ways to manage users (``--bus-credentials``):

* ``rabbitmqctl`` — the broker runs on this machine. Passwords go to
  ``rabbitmqctl add_user`` / ``change_password`` on standard input, never on a
  command line another user could read in ``ps``;
* ``http(s)://[user:password@]host:15672`` — the management HTTP API
  (:mod:`hwfleet.integrations.rabbitmq_users_http`); without user info in the
  URL it logs in with the bus URL's credentials.

The controller keeps no password: provisioning again sets a new one.
"""

from __future__ import annotations

import abc
import asyncio
import json
import logging
import re
import secrets
import shutil
import weakref
from dataclasses import dataclass
from typing import NamedTuple
from urllib.parse import unquote, urlsplit

from hwfleet.bus.topology import DEFAULT_PREFIX, DEVICESCAN, Topology
from hwfleet.errors import BusError
from hwfleet.protocol.carrier import (
    AGENTS_EXCHANGE,
    UPLINK_EXCHANGE,
    device_queue,
    device_user,
)

log = logging.getLogger(__name__)

#: Subprocesses / HTTP requests provisioning runs at once (each device one at a time).
CONCURRENCY = 2


class BusCredentialsError(BusError, RuntimeError):
    """The broker refused or failed to create, change or delete a device user."""


class Credentials(NamedTuple):
    """A device's RabbitMQ user and password; ``repr`` hides the password."""

    username: str
    password: str

    def __repr__(self) -> str:
        return f"Credentials(username={self.username!r}, password=<hidden>)"

    def __str__(self) -> str:
        return self.__repr__()


@dataclass(frozen=True, slots=True)
class Grants:
    """What one device may do: vhost permission patterns and topic permissions."""

    configure: str
    write: str
    read: str
    #: ``(exchange, write pattern, read pattern)`` for each topic exchange it uses.
    topics: tuple[tuple[str, str, str], ...]


_NAME = re.compile(r"[A-Za-z0-9_.:-]+")


def _literal(name: str) -> str:
    """``name`` as a regular expression (names here hold no special character but ``.``)."""
    if not _NAME.fullmatch(name):
        raise ValueError(f"{name!r} cannot be put in a permission pattern")
    return name.replace(".", r"\.")


def _exactly(*names: str) -> str:
    return "^(" + "|".join(_literal(name) for name in names) + ")$"


def grants(device: str, prefix: str = DEFAULT_PREFIX) -> Grants:
    """The permissions of ``device``'s own user (module docstring)."""
    topology = Topology(prefix)
    own = (
        topology.queue(device_queue(device)),
        topology.queue(device_queue(device, "scan")),
    )
    uplink = topology.exchange(UPLINK_EXCHANGE)
    agents = topology.exchange(AGENTS_EXCHANGE)
    key = _literal(device)
    return Grants(
        configure=_exactly(*own),
        write=_exactly(uplink, *own),
        read=_exactly(agents, topology.exchange(DEVICESCAN), *own),
        topics=((uplink, rf"^{key}\.", "^$"), (agents, "^$", rf"^{key}$")),
    )


def vhost_of(bus_url: str) -> str:
    """The vhost an AMQP URL names (``/`` when it names none)."""
    path = urlsplit(bus_url).path
    return unquote(path[1:]) if len(path) > 1 else "/"


class Provisioner(abc.ABC):
    """``provision(uuid) -> (username, password)`` and ``revoke(uuid)`` for device users."""

    def __init__(self, vhost: str, *, prefix: str = DEFAULT_PREFIX) -> None:
        self.vhost = vhost
        self.prefix = prefix
        self._slots = asyncio.Semaphore(CONCURRENCY)
        self._locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()

    def _lock(self, device: str) -> asyncio.Lock:
        lock = self._locks.get(device)
        if lock is None:
            lock = asyncio.Lock()
            self._locks[device] = lock
        return lock

    async def provision(self, device: str) -> Credentials:
        """Create the device's user (or give it a new password) with its grants."""
        credentials = Credentials(device_user(device), secrets.token_urlsafe(32))
        lock = self._lock(device)
        async with lock, self._slots:
            await self._create(credentials, grants(device, self.prefix))
        log.info("bus user %s provisioned in vhost %s", credentials.username, self.vhost)
        return credentials

    async def revoke(self, device: str) -> None:
        """Delete the device's user; RabbitMQ closes its connections. No user: nothing to do."""
        username = device_user(device)
        lock = self._lock(device)
        async with lock, self._slots:
            existed = await self._delete(username)
        if existed:
            log.warning("bus user %s deleted: its connections are closed", username)

    @abc.abstractmethod
    async def _create(self, credentials: Credentials, grants: Grants) -> None: ...

    @abc.abstractmethod
    async def _delete(self, username: str) -> bool:
        """Delete the user; False when there was none."""


class RabbitmqctlProvisioner(Provisioner):
    """Device users through ``rabbitmqctl`` on the broker's machine."""

    def __init__(
        self,
        vhost: str,
        *,
        prefix: str = DEFAULT_PREFIX,
        rabbitmqctl: str = "rabbitmqctl",
        node: str | None = None,
        timeout: float = 60.0,
    ) -> None:
        super().__init__(vhost, prefix=prefix)
        path = shutil.which(rabbitmqctl)
        if path is None:
            raise ValueError(
                f"--bus-credentials rabbitmqctl: {rabbitmqctl!r} is not on PATH (it must run on "
                "the broker's machine; otherwise give the management API URL)"
            )
        self._ctl = path
        self._node = node
        self._timeout = timeout

    async def _run(self, *args: str, stdin: str | None = None) -> tuple[int, str]:
        """Run one rabbitmqctl command; ``stdin`` (a password) never goes on the command line."""
        command = [self._ctl, "-q", *(("-n", self._node) if self._node else ()), *args]
        proc = await asyncio.create_subprocess_exec(
            *command,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        try:
            async with asyncio.timeout(self._timeout):
                out, _ = await proc.communicate(
                    (stdin + "\n").encode() if stdin is not None else b""
                )
        except TimeoutError:
            proc.kill()
            await proc.wait()
            raise BusCredentialsError(
                f"rabbitmqctl {args[0]} did not finish in {self._timeout:g} s"
            ) from None
        except asyncio.CancelledError:  # (the controller closing): leave no process behind
            proc.kill()
            await proc.wait()
            raise
        return proc.returncode or 0, out.decode("utf-8", "replace").strip()

    async def _check(self, *args: str, stdin: str | None = None) -> str:
        code, out = await self._run(*args, stdin=stdin)
        if code != 0:
            raise BusCredentialsError(f"rabbitmqctl {args[0]} failed ({code}): {out[-500:]}")
        return out

    async def _create(self, credentials: Credentials, grants: Grants) -> None:
        user = credentials.username
        # add_user and change_password read the password from stdin when it is not an argument.
        code, out = await self._run("add_user", user, stdin=credentials.password)
        if code != 0:
            if "already_exists" not in out and "already exists" not in out:
                raise BusCredentialsError(f"rabbitmqctl add_user failed ({code}): {out[-500:]}")
            await self._check("change_password", user, stdin=credentials.password)
        vhost = ("-p", self.vhost)
        await asyncio.gather(
            self._check(
                "set_permissions", *vhost, user, grants.configure, grants.write, grants.read
            ),
            *(
                self._check("set_topic_permissions", *vhost, user, exchange, write, read)
                for exchange, write, read in grants.topics
            ),
        )

    async def set_policy(self, name: str, pattern: str, definition: dict[str, object]) -> None:
        """``rabbitmqctl set_policy`` on this vhost's queues (see rabbitmq_policy)."""
        await self._check(
            "set_policy",
            *("-p", self.vhost, "--apply-to", "queues", "--priority", "0"),
            name,
            pattern,
            json.dumps(definition),
        )

    async def _delete(self, username: str) -> bool:
        code, out = await self._run("delete_user", username)
        if code == 0:
            return True
        if "no_such_user" in out or "does not exist" in out:
            return False
        raise BusCredentialsError(f"rabbitmqctl delete_user failed ({code}): {out[-500:]}")


def build_provisioner(
    setting: str, bus_url: str, *, prefix: str = DEFAULT_PREFIX
) -> Provisioner | None:
    """The provisioner ``--bus-credentials`` asks for; None when it is off (``""``)."""
    if not setting:
        return None
    if urlsplit(bus_url).scheme not in ("amqp", "amqps"):
        raise ValueError("--bus-credentials needs a RabbitMQ bus (--bus amqp://…)")
    vhost = vhost_of(bus_url)
    if setting == "rabbitmqctl":
        return RabbitmqctlProvisioner(vhost, prefix=prefix)
    if urlsplit(setting).scheme in ("http", "https"):
        from hwfleet.integrations.rabbitmq_users_http import ManagementApiProvisioner

        return ManagementApiProvisioner.from_urls(setting, bus_url, vhost, prefix=prefix)
    raise ValueError(
        "--bus-credentials must be empty (off), 'rabbitmqctl', or the management API URL "
        "(http(s)://host:15672)"
    )
