"""Who sent the command being handled, and the live sessions each trusted key holds.

The agent obeys more than one peer: the controller it enrolled with (over its
own link, identified by the pinned CA) and, when ``--admin-listen`` is on,
clients that connect to the device and prove a key on its trust list
(:mod:`hwfleet.agent.access.admin_listener`). Command handlers receive only the
runtime, so the listener names the caller in :data:`CALLER` for the duration of
its connection: a ``contextvars`` value is per task, so two peers' commands
never see each other's identity (a plain attribute on the runtime would).

:class:`PeerSessions` lets ``device.trust.remove`` (and a password change with
``reset_acl``) drop the sessions of a key the moment it stops being trusted.

Only the standard library: every agent imports this.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from contextvars import ContextVar

#: The access id (``SHA256:…`` key fingerprint) of the listener peer whose command runs now;
#: None on the controller link, whose identity is the pinned CA.
CALLER: ContextVar[str | None] = ContextVar("hwfleet_agent_caller", default=None)


class PeerSessions:
    """Close callbacks of the live listener sessions, by the access id each proved."""

    def __init__(self) -> None:
        self._sessions: dict[str, dict[int, Callable[[], None]]] = {}
        self._next = 0

    def add(self, access_id: str, close: Callable[[], None]) -> Callable[[], None]:
        """Register a session; returns the function that unregisters it."""
        self._next += 1
        token = self._next
        self._sessions.setdefault(access_id, {})[token] = close

        def forget() -> None:
            held = self._sessions.get(access_id, {})
            held.pop(token, None)
            if not held:
                self._sessions.pop(access_id, None)

        return forget

    def revoke(self, access_ids: Iterable[str]) -> int:
        """Close every session of these keys at once; returns how many were closed."""
        closed = 0
        for access_id in access_ids:
            for close in list(self._sessions.pop(access_id, {}).values()):
                close()
                closed += 1
        return closed

    def count(self, access_id: str) -> int:
        return len(self._sessions.get(access_id, {}))
