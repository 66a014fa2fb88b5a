"""The agent's own modules, compiled by a helper process so the agent never runs the compiler.

The agent process runs with ``-OO`` (:mod:`hwfleet.cli.agent_process`), and ``-OO``
bytecode is in no wheel: pip compiles only the plain ``.pyc``. Compiling the ~70
modules it loads itself, the agent would keep the compiler's leftovers — about
0.4 MB of holes in its heap — for its lifetime (issue 18: an idle agent ≤ 25 MB).
So, for the modules of :data:`STARTUP_MODULES` without cached bytecode, the agent
process first runs ``python -OO -X no_debug_ranges -m hwfleet.agent.compiled
NAME...``, a short-lived helper with the agent's own flags. It writes the ``.pyc``
files where Python would (the next start finds them), and where it may not —
``PYTHONDONTWRITEBYTECODE``, a read-only install — it sends the code objects
(``marshal``) on its stdout instead: the agent imports those modules from that
bundle at once and then lets the bytes go. Anything else the agent imports later
compiles as usual.

A module whose source changed since the helper read it, a helper that fails, or
output that is not a bundle: the agent compiles as Python always does, after one
line on stderr for the last two.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.machinery
import importlib.util
import marshal
import os
import struct
import subprocess
import sys
from collections.abc import Sequence
from types import CodeType, ModuleType
from typing import BinaryIO

#: The hwfleet modules an idle agent on the stream transport has imported (its defaults:
#: discovery and MDP answered), besides this one and those imported before it. A test
#: compares this with what a real agent imports (tests/e2e/test_agent_process.py).
STARTUP_MODULES = (
    "hwfleet._lazy",
    "hwfleet.agent.commands",
    "hwfleet.agent.commands.catalog",
    "hwfleet.agent.datadir_lock",
    "hwfleet.agent.discovery",
    "hwfleet.agent.hardware",
    "hwfleet.agent.hardware._netlink",
    "hwfleet.agent.hardware._sysfs",
    "hwfleet.agent.hardware.base",
    "hwfleet.agent.hardware.cpu",
    "hwfleet.agent.hardware.disks",
    "hwfleet.agent.hardware.dispatch",
    "hwfleet.agent.hardware.dmi",
    "hwfleet.agent.hardware.linkinfo",
    "hwfleet.agent.hardware.memory",
    "hwfleet.agent.hardware.net",
    "hwfleet.agent.hardware.pci",
    "hwfleet.agent.hardware.sysfs",
    "hwfleet.agent.identity",
    "hwfleet.agent.links",
    "hwfleet.agent.links.backoff",
    "hwfleet.agent.links.enroll_child",
    "hwfleet.agent.links.stream",
    "hwfleet.agent.localstate",
    "hwfleet.agent.main",
    "hwfleet.agent.peers",
    "hwfleet.agent.plugins",
    "hwfleet.agent.runtime",
    "hwfleet.agent.status",
    "hwfleet.agent.tasks",
    "hwfleet.cli.agent_process",
    "hwfleet.cli.common",
    "hwfleet.discovery",
    "hwfleet.discovery.guards",
    "hwfleet.discovery.metadata",
    "hwfleet.discovery.responder",
    "hwfleet.discovery.udp",
    "hwfleet.durations",
    "hwfleet.entrypoints",
    "hwfleet.errors",
    "hwfleet.mdp",
    "hwfleet.mdp.agent_commands",
    "hwfleet.mdp.keys",
    "hwfleet.mdp.serve",
    "hwfleet.mdp.sync_config",
    "hwfleet.protocol",
    "hwfleet.protocol.envelope",
    "hwfleet.protocol.errors",
    "hwfleet.protocol.framing",
    "hwfleet.protocol.inventory",
    "hwfleet.protocol.methods",
    "hwfleet.protocol.session",
    "hwfleet.protocol.status",
    "hwfleet.protocol.stream",
    "hwfleet.settings",
    "hwfleet.trust",
    "hwfleet.trust.enroll_batch",
    "hwfleet.trust.files",
    "hwfleet.trust.fingerprints",
    "hwfleet.trust.identity",
    "hwfleet.trust.tls",
    "hwfleet.types",
)

MAGIC = b"hwfleet-bytecode 1\n"
#: Per module: name length, code length, the source's mtime (ns) and size when compiled.
_ENTRY = struct.Struct("<HIqq")
#: The helper's flags: the agent process's own, so the code is what it would have compiled.
HELPER_FLAGS = ("-OO", "-X", "no_debug_ranges")


class BundleError(ValueError):
    """The helper's output is not a bundle; the message says where it stops making sense."""


def source_path(name: str) -> str:
    """Where ``name`` (a module of hwfleet) has its source, found without importing it."""
    import hwfleet

    parts = name.split(".")
    if parts[0] != "hwfleet":
        raise ValueError(f"{name} is not a module of hwfleet")
    base = os.path.join(os.path.dirname(hwfleet.__file__ or ""), *parts[1:])
    package = os.path.join(base, "__init__.py")
    return package if os.path.exists(package) else base + ".py"


def uncached(names: Sequence[str]) -> list[str]:
    """Those of ``names`` that this interpreter would have to compile: a source, no bytecode."""
    sources = [(name, source_path(name)) for name in names]
    return [
        name
        for name, path in sources
        if os.path.exists(path) and not os.path.exists(importlib.util.cache_from_source(path))
    ]


def write_bundle(names: Sequence[str], out: BinaryIO) -> None:
    """Compile ``names`` (hwfleet modules): each ``.pyc`` where Python would write it, and
    onto ``out`` (as :func:`parse_bundle` reads) those it may not write there."""
    import py_compile

    out.write(MAGIC)
    for name in names:
        path = source_path(name)
        if not sys.dont_write_bytecode:
            try:
                py_compile.compile(path, doraise=True)
                continue
            except (OSError, py_compile.PyCompileError):
                pass  # a read-only install: the agent gets this one from the bundle
        with open(path, "rb") as source:
            stat = os.fstat(source.fileno())
            code = compile(source.read(), path, "exec", dont_inherit=True)
        data = marshal.dumps(code)
        encoded = name.encode()
        out.write(_ENTRY.pack(len(encoded), len(data), stat.st_mtime_ns, stat.st_size))
        out.write(encoded)
        out.write(data)


def parse_bundle(data: bytes) -> dict[str, tuple[int, int, memoryview]]:
    """``{name: (mtime_ns, size, marshalled code)}``; :class:`BundleError` for anything else."""
    if not data.startswith(MAGIC):
        raise BundleError("it does not start with the bundle's magic line")
    view = memoryview(data)
    entries: dict[str, tuple[int, int, memoryview]] = {}
    at = len(MAGIC)
    while at < len(view):
        if len(view) - at < _ENTRY.size:
            raise BundleError(f"an entry's header is cut short at byte {at}")
        name_len, code_len, mtime, size = _ENTRY.unpack_from(view, at)
        at += _ENTRY.size
        if len(view) - at < name_len + code_len:
            raise BundleError(f"an entry is cut short at byte {at}")
        try:
            name = bytes(view[at : at + name_len]).decode()
        except UnicodeDecodeError:
            raise BundleError(f"an entry's name at byte {at} is not UTF-8") from None
        if not name.startswith("hwfleet.") or name in entries:
            raise BundleError(f"entry {name!r} is not a module of hwfleet or comes twice")
        at += name_len
        entries[name] = (mtime, size, view[at : at + code_len])
        at += code_len
    return entries


class Bundle:
    """Serves the bundle's modules to the import system until :meth:`import_all` is done."""

    def __init__(self, entries: dict[str, tuple[int, int, memoryview]]) -> None:
        self._entries = entries

    def find_spec(
        self, name: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if name not in self._entries:
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path, target)
        if spec is None or not isinstance(spec.loader, importlib.machinery.SourceFileLoader):
            return None
        spec.loader = _BundledLoader(name, spec.loader.path, self)
        return spec

    def code(self, name: str, path: str) -> CodeType | None:
        """The helper's code for ``name`` if its source is still the one it compiled."""
        entry = self._entries.pop(name, None)
        if entry is None:
            return None
        mtime, size, data = entry
        stat = os.stat(path)
        if (stat.st_mtime_ns, stat.st_size) != (mtime, size):
            return None  # edited since: compiled here, as usual
        code = marshal.loads(data)  # noqa: S302 - from our own helper's pipe, never the network
        return code if isinstance(code, CodeType) else None

    def import_all(self) -> None:
        """Import every module of the bundle now, then stop serving and let the bytes go."""
        sys.meta_path.insert(0, self)
        try:
            for name in list(self._entries):
                # Where the agent imports it, it raises again and says why.
                with contextlib.suppress(ImportError):
                    importlib.import_module(name)
        finally:
            sys.meta_path.remove(self)
            self._entries.clear()


class _BundledLoader(importlib.machinery.SourceFileLoader):
    def __init__(self, name: str, path: str, bundle: Bundle) -> None:
        super().__init__(name, path)
        self._bundle = bundle

    def get_code(self, fullname: str) -> CodeType | None:
        code = self._bundle.code(fullname, self.path)
        return code if code is not None else super().get_code(fullname)


def precompiled(names: Sequence[str] = STARTUP_MODULES) -> Bundle | None:
    """Have the helper compile those of ``names`` without cached bytecode; the bundle of those
    it could not cache (None: nothing left to import from one)."""
    missing = uncached(names)
    if not missing:
        return None
    argv = [sys.executable, *HELPER_FLAGS, "-m", __name__, *missing]
    try:
        done = subprocess.run(argv, capture_output=True, timeout=120, check=True)
        entries = parse_bundle(done.stdout)
        return Bundle(entries) if entries else None
    except (OSError, subprocess.SubprocessError, BundleError) as exc:
        detail = getattr(exc, "stderr", b"") or b""
        reason = detail.decode(errors="replace").strip().splitlines()[-1:] or [str(exc)]
        sys.stderr.write(f"hwfleet agent: compiling its modules itself ({reason[0]})\n")
        return None


def main(argv: Sequence[str]) -> None:
    write_bundle(argv, sys.stdout.buffer)


if __name__ == "__main__":
    main(sys.argv[1:])
