"""Cluster sync's SSH trust files and deletion tombstones, on real files."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest

from hwfleet.mdp import trust
from hwfleet.mdp.tombstones import STATE_DIR, Tombstones, scan

PEER = "10.9.8.7"


def identity(tmp_path: Path, name: str) -> dict[str, object]:
    key = trust.ensure_key(str(tmp_path / name))
    return {"ssh_key": key, "host_key": key, "rrsync": True}


def test_the_sync_key_is_made_once_private_and_readable_by_ssh_keygen(tmp_path: Path) -> None:
    path = tmp_path / "data" / "cluster_ssh_key"
    first = trust.ensure_key(str(path))
    assert first.startswith("ssh-ed25519 ") and trust.ensure_key(str(path)) == first
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    derived = subprocess.run(["ssh-keygen", "-y", "-f", str(path)], capture_output=True,
                             text=True, check=True, timeout=30)  # fmt: skip
    assert derived.stdout.split()[:2] == first.split()


def test_peers_get_restricted_lines_and_foreign_lines_stay(tmp_path: Path) -> None:
    auth, known = tmp_path / "authorized_keys", tmp_path / "known_hosts"
    auth.write_text("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOperatorsOwnKeyOperatorsOwnKey0 admin\n")
    ident = identity(tmp_path, "peer")
    how = trust.trust_peers(authorized_keys=str(auth), known_hosts=str(known),
                            folder="/srv/shared", peers={PEER: ident})  # fmt: skip
    lines = auth.read_text().splitlines()
    assert lines[0].endswith(" admin") and len(lines) == 2
    restricted = trust.rrsync()
    expect = f'command="{restricted} -ro /srv/shared",' if restricted else ""
    assert lines[1] == f'{expect}restrict,from="{PEER}" {ident["ssh_key"]} {trust.TAG}:{PEER}'
    assert how == {PEER: "rrsync" if restricted else "restrict"}
    assert known.read_text() == f"{PEER} {ident['host_key']} {trust.TAG}:{PEER}\n"
    # Trusting again replaces the line; forgetting non-members drops only ours.
    trust.trust_peers(authorized_keys=str(auth), known_hosts=str(known),
                      folder="/srv/shared", peers={PEER: ident})  # fmt: skip
    assert len(auth.read_text().splitlines()) == 2
    trust.forget_others(str(auth), str(known), ["10.0.0.1"])
    assert auth.read_text().splitlines() == lines[:1] and known.read_text() == "\n"
    assert oct(auth.stat().st_mode & 0o777) == "0o600"


@pytest.mark.parametrize(
    ("folder", "peers"),
    [
        ("/srv/a b", None),  # a space would split the forced command
        ('/srv/"x', None),
        ("relative", None),
        ("/srv/ok", {"not-an-ip": None}),
        ("/srv/ok", {PEER: {"ssh_key": 'ssh-ed25519 AAAA",command="sh', "host_key": ""}}),
        ("/srv/ok", {PEER: {"ssh_key": "ssh-ed25519 " + "A" * 60 + "\ncommand=x", "host_key": ""}}),
    ],
)
def test_unsafe_folders_and_keys_are_refused(
    tmp_path: Path, folder: str, peers: dict[str, object] | None
) -> None:
    auth = tmp_path / "authorized_keys"
    chosen = peers or {PEER: identity(tmp_path, "k")}
    with pytest.raises(trust.TrustError):
        trust.trust_peers(authorized_keys=str(auth), known_hosts=str(tmp_path / "kh"),
                          folder=folder, peers=chosen)  # fmt: skip
    assert not auth.exists()


def test_a_deletion_becomes_a_tombstone_that_deletes_older_copies_only(tmp_path: Path) -> None:
    folder = tmp_path / "f"
    (folder / "sub").mkdir(parents=True)
    for name in ("gone.txt", "sub/kept.txt", "newer.txt"):
        (folder / name).write_text(name)
    book = Tombstones(folder, "10.0.0.1")
    t0 = time.time()
    book.after(book.before(t0), set(), t0)  # first round: only remembers what is here
    assert scan(folder) == {"gone.txt", "sub/kept.txt", "newer.txt"}
    (folder / "gone.txt").unlink()
    (folder / "newer.txt").unlink()
    scanned = book.before(t0 + 10)
    tombs = json.loads((folder / STATE_DIR / "10.0.0.1.json").read_text())
    assert tombs == {"gone.txt": t0 + 10, "newer.txt": t0 + 10}
    # A peer that had not seen the deletions gives both back: the old copy goes again, the
    # one written after the deletion stays.
    (folder / "gone.txt").write_text("old")
    os.utime(folder / "gone.txt", (t0, t0))
    (folder / "newer.txt").write_text("rewritten")
    os.utime(folder / "newer.txt", (t0 + 20, t0 + 20))
    deleted = book.after(scanned, {"gone.txt", "newer.txt"}, t0 + 11)
    assert deleted == ["gone.txt"] and scan(folder) == {"sub/kept.txt", "newer.txt"}


def test_tombstones_from_peers_cannot_reach_outside_the_folder(tmp_path: Path) -> None:
    folder, outside = tmp_path / "f", tmp_path / "outside"
    folder.mkdir()
    outside.mkdir()
    (outside / "secret").write_text("x")
    (tmp_path / "victim").write_text("x")
    (folder / "link").symlink_to(outside)
    book = Tombstones(folder, "10.0.0.1")
    scanned = book.before(time.time())
    later = time.time() + 100
    forged = {"../victim": later, "link/secret": later, f"{STATE_DIR}/10.0.0.1.json": later}
    (folder / STATE_DIR / "10.0.0.2.json").write_text(json.dumps(forged))
    assert book.after(scanned, set(), later) == []
    assert (tmp_path / "victim").exists() and (outside / "secret").exists()


def test_trust_records_which_peers_use_rrsync_and_says_when_nothing_changed(
    tmp_path: Path,
) -> None:
    """A restarted agent must still pull ``./`` from an rrsync peer: the peer's rrsync-ness
    is kept beside known_hosts; running the same trust again changes no file."""
    auth, known = str(tmp_path / "authorized_keys"), str(tmp_path / "known_hosts")
    other = "10.9.8.6"
    peers = {PEER: identity(tmp_path, "peer"), other: {**identity(tmp_path, "o"), "rrsync": False}}
    args = {"authorized_keys": auth, "known_hosts": known, "folder": "/srv/s", "peers": peers}
    _, changed = trust.trust_peers_changed(**args)  # type: ignore[arg-type]
    assert changed is True
    assert trust.rrsync_peers(known) == {PEER}
    assert oct(trust.peers_file(known).stat().st_mode & 0o777) == "0o600"
    _, changed = trust.trust_peers_changed(**args)  # type: ignore[arg-type]
    assert changed is False
    trust.peers_file(known).write_text("not json")
    assert trust.rrsync_peers(known) == set()  # a damaged file trusts nothing extra


async def test_a_new_sync_loop_pulls_rrsync_peers_from_the_recorded_file(tmp_path: Path) -> None:
    from hwfleet.mdp.sync import FolderSync, SyncConfig

    known = str(tmp_path / "known_hosts")
    trust.trust_peers(authorized_keys=str(tmp_path / "ak"), known_hosts=known,
                      folder="/srv/s", peers={PEER: identity(tmp_path, "p")})  # fmt: skip
    sync = FolderSync(SyncConfig(str(tmp_path / "key"), known))  # a restarted agent
    assert sync.command("10.9.8.1", PEER, "/srv/s")[-2] == f"root@{PEER}:/srv/s/"  # not yet
    await sync.configure(["127.0.0.1"], str(tmp_path))  # only this machine: no loop starts
    assert sync.command("10.9.8.1", PEER, "/srv/s")[-2] == f"root@{PEER}:./"
    await sync.close()
