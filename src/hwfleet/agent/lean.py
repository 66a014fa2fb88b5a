"""Process-wide memory settings of the agent process (issue 18: an idle agent ≤ 25 MB RSS).

:func:`import_msgspec_lean` is called by :mod:`hwfleet.cli.agent_boot` (and
:mod:`hwfleet.cli.agent_process`) *before* the first ``import msgspec``, which is why
this is its own module (importing it loads nothing else): it keeps
``typing_extensions`` out of the agent while msgspec imports. msgspec's ``_utils``
takes ``get_type_hints``, ``Required`` and ``NotRequired`` from ``typing_extensions``
when it can and from ``typing`` otherwise; on Python ≥ 3.11 (hwfleet's floor) ``typing`` has all
three, and ``typing_extensions`` costs 0.3 to 0.4 MB resident for the agent's
lifetime. The block lasts only for msgspec's own import: a plugin that imports
``typing_extensions`` later gets it as usual. Where msgspec (or
``typing_extensions``) is already loaded — ``HWFLEET_AGENT_EXEC=0``, where the
agent stays in the process that parsed its options — nothing changes.

While msgspec imports, ``platform`` is a stand-in with only ``system()``: msgspec
imports :mod:`uuid`, which calls ``platform.system()`` once at import (to tell Linux
from AIX) and never again, and the real module costs an idle agent about 0.1 MB. The
stand-in leaves ``sys.modules`` with the import, so ``import platform`` later gets the
real one.

It also imports ``msgspec.inspect`` lazily (:class:`importlib.util.LazyLoader`):
msgspec's ``__init__`` imports it, but only JSON-schema generation and type
introspection use it, never encoding or decoding. Its type tables and
``msgspec._typing_utils`` cost an idle agent about 0.15 MB; the module loads in
full on its first attribute access, so a command that uses it works unchanged.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import os
import sys
from collections.abc import Sequence
from types import ModuleType

#: asyncio's TLS transport reads the socket into one buffer per connection, 256 KiB by
#: default (``asyncio.sslproto.SSLProtocol.max_size``), zero-filled and so resident for
#: the link's lifetime. The agent's link carries JSON lines; TLS records are at most
#: 16 KiB, so 32 KiB still takes two whole records per read.
TLS_READ_BUFFER = 32 * 1024


def import_msgspec_lean() -> None:
    """Import msgspec with ``typing_extensions`` blocked (a no-op once either is loaded)."""
    if "msgspec" in sys.modules or "typing_extensions" in sys.modules:
        return
    # None in sys.modules makes `import typing_extensions` raise ImportError, which
    # msgspec._utils catches (falling back to typing).
    sys.modules["typing_extensions"] = None  # type: ignore[assignment]
    platform = None
    if "uuid" not in sys.modules and "platform" not in sys.modules:
        platform = sys.modules["platform"] = _platform_for_uuid()
    lazy = _LazyFinder(LAZY_SUBMODULES)
    sys.meta_path.insert(0, lazy)
    try:
        import msgspec  # noqa: F401 - the import is the point
    finally:
        sys.meta_path.remove(lazy)
        del sys.modules["typing_extensions"]
        if platform is not None and sys.modules.get("platform") is platform:
            del sys.modules["platform"]


def _platform_for_uuid() -> ModuleType:
    """What :mod:`uuid`'s import asks of ``platform``: ``system()``, as the real one answers."""
    stand_in = ModuleType("platform", "hwfleet.agent.lean's stand-in while msgspec imports")
    stand_in.system = lambda: os.uname().sysname  # type: ignore[attr-defined]
    return stand_in


#: msgspec's submodules that its ``__init__`` imports but encoding and decoding never use.
LAZY_SUBMODULES = ("msgspec.inspect",)


class _LazyFinder:
    """Finds ``names`` as usual but defers running them to their first attribute access."""

    def __init__(self, names: Sequence[str]) -> None:
        self.names = names

    def find_spec(
        self, name: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if name not in self.names:
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path, target)
        if spec is not None and spec.loader is not None:
            spec.loader = importlib.util.LazyLoader(spec.loader)
        return spec


def small_tls_buffers() -> None:
    """Shrink asyncio's per-connection TLS read buffer (this process only)."""
    import asyncio.sslproto

    asyncio.sslproto.SSLProtocol.max_size = TLS_READ_BUFFER
