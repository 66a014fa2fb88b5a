"""Per-node credentials for RackHD's bootstrap pair over HTTPS (requestCommands/respondCommands).

A machine without a full agent (a discovery image, an installer) fetches its commands
from ``GET /api/v1/nodes/<node>/commands`` and posts their output back. It must not hold
the operator token, so each active graph on a node has its own credential::

    hwn1.<graphId>.<mac>     mac = HMAC-SHA256(key, "<graphId>\\0<node>"), base64url

The key is derived from the operator token, which every replica shares (README,
"Controller replicas"), so any replica can check a credential without a table or a
round trip to another replica. A credential is valid only while its graph is active and
only for that graph's node, and only on the two commands routes (the API's front door
lets nothing else through with it). It is revoked when the graph ends: the check reads
the graph's row. Rotating the operator token revokes every node credential with it.

The credential reaches the machine in its boot script: ``getBootProfile`` adds it to the
profile's options as ``commandsToken`` when the active graph has a
``Task.Base.Linux.Commands`` task, and an operator can fetch it with
``GET /api/v1/graphs/<id>/node-credential``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from typing import TYPE_CHECKING

from hwfleet.store.graphs import GraphRepository

if TYPE_CHECKING:
    from hwfleet.store import Store

PREFIX = "hwn1."
#: The option name a boot profile template uses (``$commandsToken``).
OPTION = "commandsToken"
_LABEL = b"hwfleet node commands credential v1"
_DONE = ("succeeded", "failed", "cancelled")


def looks_like(token: str) -> bool:
    """Whether a bearer value has the node-credential shape (checked properly by the route)."""
    return token.startswith(PREFIX) and token.count(".") == 2 and len(token) < 200


class NodeCredentials:
    """Mints and checks node credentials under a key derived from the operator token."""

    def __init__(self, operator_token: str) -> None:
        if not operator_token:
            raise ValueError("node credentials need the operator token to derive their key")
        self._key = hmac.new(operator_token.encode(), _LABEL, hashlib.sha256).digest()

    def mint(self, graph_id: str, node: str) -> str:
        return f"{PREFIX}{graph_id}.{self._mac(graph_id, node)}"

    def _mac(self, graph_id: str, node: str) -> str:
        digest = hmac.new(self._key, f"{graph_id}\0{node}".encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")

    def graph_of(self, token: str, node: str) -> str | None:
        """The graph id a credential was minted for on ``node``; None if it is not one."""
        if not looks_like(token):
            return None
        graph_id, mac = token[len(PREFIX) :].split(".")
        if not graph_id or not hmac.compare_digest(mac, self._mac(graph_id, node)):
            return None
        return graph_id

    async def valid(self, store: Store, token: str, node: str) -> bool:
        """True while ``token`` is ``node``'s credential and its graph is still active."""
        graph_id = self.graph_of(token, node)
        if graph_id is None:
            return False
        async with store.tx(readonly=True) as tx:
            graph = await GraphRepository(tx.conn).get_graph(graph_id)
        return graph is not None and graph.node == node and graph.status not in _DONE
