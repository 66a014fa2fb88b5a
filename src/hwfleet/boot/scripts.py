"""Which iPXE script a machine gets (DESIGN §14).

1. a node with an active graph: that graph's profile;
2. a MAC no enrolled device reports: the discovery profile, with a single-use enrollment
   token — issued only to the address Kea leased to that MAC, one live token per MAC;
3. anything else: boot from the local disk.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from hwfleet.boot.leases import LeaseSource
from hwfleet.boot.nodes import Node, NodeResolver
from hwfleet.boot.profiles import ActiveGraphProfiles, ProfileLibrary

IssueToken = Callable[[float], Awaitable[str]]
#: Seconds a discovery token stays valid (and is handed out again to the same MAC).
TOKEN_TTL = 3600.0


class NotLeasedError(PermissionError):
    """A discovery script asked for from an address Kea did not lease to that MAC."""


@dataclass(frozen=True, slots=True)
class Script:
    node: Node
    profile: str
    text: str


class BootScripts:
    def __init__(
        self,
        nodes: NodeResolver,
        leases: LeaseSource,
        graphs: ActiveGraphProfiles,
        library: ProfileLibrary,
        issue_token: IssueToken,
        *,
        base_url: str,
        controller: str,
        ca_fingerprint: str = "",
    ) -> None:
        """``ca_fingerprint``: the controller CA's, put in every script as ``$ca`` so that
        the discovery agent pins the controller instead of trusting the first one it meets."""
        self._nodes = nodes
        self._leases = leases
        self._graphs = graphs
        self._library = library
        self._issue = issue_token
        self._base = base_url.rstrip("/")
        self._controller = controller
        self._ca = ca_fingerprint
        self._tokens: dict[str, tuple[str, float]] = {}  # mac → (token, expires, monotonic)

    async def for_mac(self, mac: str, client_ip: str) -> Script:
        node = await self._nodes.find(mac)
        values = {"base": self._base, "node": node.id, "mac": mac, "controller": self._controller}
        values["ca"] = self._ca
        profile = await self._graphs.boot_profile(node.id)
        if profile is not None:
            text = self._library.render(profile.name, {**profile.options, **values})
            return Script(node, profile.name, text)
        if not node.enrolled:
            token = await self._token_for(mac, client_ip)
            text = self._library.render("discovery", {**values, "token": token})
            return Script(node, "discovery", text)
        return Script(node, "local", self._library.render("local", values))

    async def _token_for(self, mac: str, client_ip: str) -> str:
        leased = {x.ip for x in await self._leases.by_mac(mac) if x.state == "active"}
        if client_ip not in leased:
            raise NotLeasedError(f"{client_ip} does not hold a lease for {mac}")
        now = time.monotonic()
        self._tokens = {m: t for m, t in self._tokens.items() if t[1] > now}
        if mac in self._tokens:
            return self._tokens[mac][0]
        token = await self._issue(TOKEN_TTL)
        # Handed out again until shortly before it expires, so a rebooting machine does not
        # mint a token per attempt.
        self._tokens[mac] = (token, now + TOKEN_TTL - 60)
        return token
