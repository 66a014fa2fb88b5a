"""Reaching RabbitMQ: wait for the broker at start, say clearly what is wrong.

A controller started before its broker (a reboot, a compose file without
ordering) should wait and say so once per attempt, not exit with a traceback.
Wrong credentials or a missing vhost are not going to fix themselves, so
those fail at once with the broker's own reason.
"""

from __future__ import annotations

import asyncio
import errno
import logging
from urllib.parse import urlsplit

import aio_pika
import aiormq.exceptions
from aio_pika.abc import AbstractRobustConnection

from hwfleet.errors import BusError

log = logging.getLogger(__name__)

#: First and largest pause between start-up attempts, seconds.
RETRY_FIRST = 1.0
RETRY_MAX = 10.0


class BusUnavailableError(BusError, ConnectionError):
    """The broker could not be reached (or refused us) and we stopped trying."""


def broker_address(url: str) -> str:
    """``host:port`` of an AMQP URL, for messages (never the credentials)."""
    parts = urlsplit(url)
    default = 5671 if parts.scheme == "amqps" else 5672
    host = parts.hostname or "localhost"
    if ":" in host:
        host = f"[{host}]"
    return f"{host}:{parts.port or default}"


def _refusal(exc: BaseException) -> str:
    # aiormq wraps the socket error as AMQPConnectionError(errno, text); look through it.
    chain: list[BaseException] = [exc]
    while chain[-1].__cause__ is not None and len(chain) < 5:
        chain.append(chain[-1].__cause__)
    for err in chain:
        code = err.args[0] if err.args else None
        if isinstance(err, ConnectionRefusedError) or code == errno.ECONNREFUSED:
            return "refused the connection"
        if isinstance(err, TimeoutError):
            return "did not answer in time"
    reason = exc.args[1] if len(exc.args) > 1 else exc
    return f"could not be reached ({reason})"


async def connect(
    url: str,
    *,
    connect_timeout: float | None = None,
    reconnect_interval: float = 1.0,
    name: str = "hwfleet",
) -> AbstractRobustConnection:
    """A robust connection, retrying until the broker answers or ``connect_timeout`` passes."""
    where = broker_address(url)
    loop = asyncio.get_running_loop()
    deadline = None if connect_timeout is None else loop.time() + connect_timeout
    pause = RETRY_FIRST
    while True:
        try:
            return await aio_pika.connect_robust(
                url,
                timeout=10,
                reconnect_interval=reconnect_interval,
                client_properties={"connection_name": name},
            )
        except (
            aiormq.exceptions.AuthenticationError,
            aiormq.exceptions.ProbableAuthenticationError,
        ) as exc:
            raise BusUnavailableError(f"RabbitMQ at {where} refused the login: {exc}") from exc
        except aiormq.exceptions.ConnectionNotAllowed as exc:
            raise BusUnavailableError(
                f"RabbitMQ at {where} refused access (is the vhost right, and may this user use"
                f" it?): {exc}"
            ) from exc
        except (OSError, TimeoutError, aiormq.exceptions.AMQPConnectionError) as exc:
            problem = _refusal(exc)
            if deadline is not None:
                left = deadline - loop.time()
                if left <= 0:
                    raise BusUnavailableError(
                        f"RabbitMQ at {where} {problem}; gave up after {connect_timeout:g} s"
                        " (set --bus or HWFLEET_BUS)"
                    ) from exc
                pause = min(pause, left)
            log.warning(
                "RabbitMQ at %s %s — is it running? set --bus or HWFLEET_BUS; retrying in %s s",
                where,
                problem,
                f"{pause:.1f}".rstrip("0").rstrip("."),
            )
            await asyncio.sleep(pause)
            pause = min(pause * 2, RETRY_MAX)
