"""The agent's TLS: enroll when needed, then mTLS with the pinned controller CA."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable

from hwfleet.agent.links.enroll import ensure_enrolled
from hwfleet.trust import AgentIdentity, enrolled_context


class AgentTls:
    """An :data:`~hwfleet.agent.links.stream.SslProvider`: one call per connection attempt.

    ``identity`` is the agent's, or a function that makes it: then it is made (the key
    generated, the files written and synced) in a worker thread at the first connection
    attempt. ``hwfleet sim`` builds its devices that way: a thousand key generations and
    two thousand ``fsync`` calls before the first device started were most of the
    simulator's start (issue 18); now each device makes its key as it starts enrolling.
    """

    def __init__(
        self,
        identity: AgentIdentity | Callable[[], AgentIdentity],
        host: str,
        port: int,
        *,
        password: str = "",
        token: str = "",
        controller_fingerprint: str = "",
        local_address: str | None = None,
    ) -> None:
        self._identity = identity if isinstance(identity, AgentIdentity) else None
        self._make_identity = None if isinstance(identity, AgentIdentity) else identity
        self._host = host
        self._port = port
        self._password = password
        self._token = token
        self._fingerprint = controller_fingerprint or None
        self._local = local_address
        self._context: ssl.SSLContext | None = None

    @property
    def identity(self) -> AgentIdentity | None:
        """The agent's identity; None while a deferred one is not made yet."""
        return self._identity

    async def __call__(self) -> ssl.SSLContext:
        identity = self._identity
        if identity is None:
            assert self._make_identity is not None  # one of the two is always given
            identity = self._identity = await asyncio.to_thread(self._make_identity)
        enrolled_now = await ensure_enrolled(
            identity,
            self._host,
            self._port,
            password=self._password,
            token=self._token,
            expected_fingerprint=self._fingerprint,
            local_address=self._local,
        )
        if enrolled_now is not None:
            self._token = ""  # single use: never sent twice
            self._context = None
        if self._context is None:
            self._context = enrolled_context(identity)
        return self._context
