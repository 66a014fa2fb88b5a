"""Folder sync's settings, apart from :mod:`hwfleet.mdp.sync` itself.

Every agent reads them at start (:class:`hwfleet.mdp.serve.MdpOptions`), while the sync
code (rsync over SSH, tombstones, ``shlex``) loads only when a cluster request arrives
(issue 18: an idle agent carries only what it runs).
"""

from __future__ import annotations

import msgspec


class SyncConfig(msgspec.Struct, frozen=True):
    """A struct, not a dataclass: every agent builds one, and ``dataclasses`` would stay
    resident in it for this record alone (issue 18)."""

    #: This machine's sync key (made at first use, hwfleet.mdp.trust).
    ssh_key: str
    known_hosts: str
    user: str = "root"
    interval: float = 30.0
    #: Where the peers' keys go (the SSH user's authorized_keys here).
    authorized_keys: str = ""
    #: This machine's sshd host public key file (empty: the first of /etc/ssh's).
    host_key: str = ""
