"""Cluster SSH trust: each member's own sync key, and the peers it lets read its folder.

``hwfleet mdp cluster`` hands these around over the authenticated diagnostics channel
(version "2" only: a v1.0 request carries the machine key in the clear and may not change
who can log in here):

1. ``cluster_identity`` on each member returns its public sync key (made at first use,
   ed25519, ``<data-dir>/cluster_ssh_key`` mode 0600), its sshd host key and whether
   rrsync is installed;
2. ``cluster_trust`` on each member gives it the folder and the other members'
   identities: each peer's public key goes into this machine's authorized_keys as
   ``command="rrsync -ro FOLDER",restrict,from="PEER"`` (only ``restrict,from=`` where
   rrsync is missing), each peer's host key into the cluster known_hosts. Lines this
   module writes end with ``hwfleet-mdp-cluster:<ip>``; other lines are left alone.

Members pull from each other (:mod:`hwfleet.mdp.sync`), so read-only access is enough.
Which peers restrict this machine's key with rrsync (so their folder is ``./``) is kept in
``cluster_peers.json`` beside the known_hosts, so a restarted agent still pulls right.
``hwfleet bootstrap --cluster-sync`` runs :func:`trust_peers` on each target over SSH
(hwfleet.bootstrap.cluster), which is why it returns whether the files changed.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Iterable
from pathlib import Path

from hwfleet.trust.files import write_private

TAG = "hwfleet-mdp-cluster"
#: sshd's host public keys, the preferred first.
HOST_KEYS = ("ssh_host_ed25519_key.pub", "ssh_host_ecdsa_key.pub", "ssh_host_rsa_key.pub")
_PUBKEY = re.compile(
    r"^(ssh-ed25519|ecdsa-sha2-nistp(256|384|521)|ssh-rsa) [A-Za-z0-9+/]{40,1400}={0,3}$"
)
#: Folder names that go into a forced command unquoted (sshd runs it through a shell).
_SAFE_FOLDER = re.compile(r"^/[A-Za-z0-9._/@+,-]*$")


class TrustError(ValueError):
    """Refused identity or folder; the message goes into the operation's error."""


def public_key(text: str, what: str) -> str:
    """``type base64`` of an OpenSSH public key line (comment dropped), or TrustError."""
    fields = text.split()
    key = " ".join(fields[:2])
    if len(fields) < 2 or not _PUBKEY.match(key):
        raise TrustError(f"{what} is not an OpenSSH public key")
    return key


def ensure_key(path: str) -> str:
    """The public half of the sync key at ``path``, made (ed25519, 0600) when missing."""
    private = Path(path)
    pub = Path(f"{path}.pub")
    if not private.exists():
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

        made = Ed25519PrivateKey.generate()
        private.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        pem = made.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.OpenSSH,
            serialization.NoEncryption(),
        )
        line = made.public_key().public_bytes(
            serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
        )
        write_private(private, pem)
        pub.write_bytes(line + f" {TAG}\n".encode())
    return public_key(pub.read_text(), str(pub))


def host_key(configured: str) -> str:
    """This machine's sshd host public key: ``configured``, else the first of /etc/ssh's."""
    candidates = [Path(configured)] if configured else [Path("/etc/ssh") / n for n in HOST_KEYS]
    for path in candidates:
        if path.is_file():
            return public_key(path.read_text(), str(path))
    raise TrustError("no sshd host key found (is openssh-server installed?)")


def rrsync() -> str | None:
    return shutil.which("rrsync") or next(
        (p for p in ("/usr/bin/rrsync", "/usr/local/bin/rrsync") if os.access(p, os.X_OK)), None
    )


def safe_folder(folder: str) -> str:
    if not _SAFE_FOLDER.match(folder) or "/../" in f"{folder}/":
        raise TrustError("the sync folder may hold only letters, digits and ._/@+,- for trust")
    return folder


def authorized_line(peer: str, key: str, folder: str, restricted_by: str | None) -> str:
    options = f'restrict,from="{peer}"'
    if restricted_by:
        options = f'command="{restricted_by} -ro {safe_folder(folder)}",{options}'
    return f"{options} {key} {TAG}:{peer}"


def _tagged_for(line: str) -> str | None:
    last = line.rsplit(None, 1)[-1] if line.strip() else ""
    return last.split(":", 1)[1] if last.startswith(f"{TAG}:") else None


def merge_lines(path: str, lines: dict[str, str], keep: Iterable[str] | None = None) -> None:
    """Replace this module's line for each address in ``lines``; with ``keep``, also drop
    this module's lines for addresses not in it. Foreign lines stay as they were."""
    target = Path(path)
    old = target.read_text().splitlines() if target.exists() else []
    members = None if keep is None else set(keep)
    kept = []
    for line in old:
        peer = _tagged_for(line)
        if peer is None or (peer not in lines and (members is None or peer in members)):
            kept.append(line)
    text = "\n".join([*kept, *lines.values()]) + "\n"
    target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    write_private(target, text.encode())


def peers_file(known_hosts: str) -> Path:
    return Path(known_hosts).with_name("cluster_peers.json")


def rrsync_peers(known_hosts: str) -> set[str]:
    """Peers recorded as restricting this machine's key with rrsync (pull ``./``)."""
    path = peers_file(known_hosts)
    try:
        recorded = json.loads(path.read_text())
    except (OSError, ValueError):
        return set()
    if not isinstance(recorded, dict):
        return set()
    return {ip for ip, v in recorded.items() if isinstance(v, dict) and v.get("rrsync") is True}


def _record_peers(known_hosts: str, peers: dict[str, bool]) -> None:
    path = peers_file(known_hosts)
    try:
        old = json.loads(path.read_text()) if path.exists() else {}
    except ValueError:
        old = {}
    merged = {
        **(old if isinstance(old, dict) else {}),
        **{p: {"rrsync": r} for p, r in peers.items()},
    }
    write_private(path, json.dumps(merged, sort_keys=True).encode())


def _snapshot(*paths: str) -> list[str | None]:
    return [Path(p).read_text() if Path(p).exists() else None for p in paths]


def trust_peers(
    *,
    authorized_keys: str,
    known_hosts: str,
    folder: str,
    peers: dict[str, dict[str, object]],
) -> dict[str, str]:
    """Let ``peers`` (ip -> {ssh_key, host_key, rrsync}) read ``folder`` and record their
    host keys. Returns ip -> "rrsync" or "restrict" (how each peer's key is limited here)."""
    return trust_peers_changed(
        authorized_keys=authorized_keys, known_hosts=known_hosts, folder=folder, peers=peers
    )[0]


def trust_peers_changed(
    *,
    authorized_keys: str,
    known_hosts: str,
    folder: str,
    peers: dict[str, dict[str, object]],
) -> tuple[dict[str, str], bool]:
    """:func:`trust_peers`, and whether any of the three files changed."""
    import ipaddress

    safe_folder(folder)
    restricted_by = rrsync()
    auth, hosts, how, theirs = {}, {}, {}, {}
    for ip, ident in peers.items():
        try:
            addr = str(ipaddress.ip_address(ip))
        except ValueError:
            raise TrustError(f"peer {ip!r} is not an IP address") from None
        ssh_key = public_key(str(ident.get("ssh_key", "")), f"{addr}'s ssh_key")
        its_host = public_key(str(ident.get("host_key", "")), f"{addr}'s host_key")
        auth[addr] = authorized_line(addr, ssh_key, folder, restricted_by)
        hosts[addr] = f"{addr} {its_host} {TAG}:{addr}"
        how[addr] = "rrsync" if restricted_by else "restrict"
        theirs[addr] = ident.get("rrsync") is True
    files = (authorized_keys, known_hosts, str(peers_file(known_hosts)))
    before = _snapshot(*files)
    merge_lines(authorized_keys, auth)
    merge_lines(known_hosts, hosts)
    _record_peers(known_hosts, theirs)
    return how, _snapshot(*files) != before


def forget_others(authorized_keys: str, known_hosts: str, members: Iterable[str]) -> None:
    """Drop this module's lines for machines no longer in the cluster."""
    members = list(members)
    for path in (authorized_keys, known_hosts):
        if Path(path).exists():
            merge_lines(path, {}, keep=members)
