"""The agent's TLS: enroll when needed, then mTLS with the pinned controller CA."""

from __future__ import annotations

import ssl

from hwfleet.agent.links.enroll import ensure_enrolled
from hwfleet.trust import AgentIdentity, enrolled_context


class AgentTls:
    """An :data:`~hwfleet.agent.links.stream.SslProvider`: one call per connection attempt."""

    def __init__(
        self,
        identity: AgentIdentity,
        host: str,
        port: int,
        *,
        password: str = "",
        token: str = "",
        controller_fingerprint: str = "",
        local_address: str | None = None,
    ) -> None:
        self.identity = identity
        self._host = host
        self._port = port
        self._password = password
        self._token = token
        self._fingerprint = controller_fingerprint or None
        self._local = local_address
        self._context: ssl.SSLContext | None = None

    async def __call__(self) -> ssl.SSLContext:
        enrolled_now = await ensure_enrolled(
            self.identity,
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
            self._context = enrolled_context(self.identity)
        return self._context
