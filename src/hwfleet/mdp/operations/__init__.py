"""Operation plugins: plain functions whose docstring is their help (seed 002).

Every public function defined in a module of this package is an operation named after
it; third parties add theirs through the ``hwfleet.mdp_operations`` entry-point group,
each entry naming a function (the entry's name is the operation's) or a module (all
its public functions). An operation takes the :class:`OperationContext` and keyword
arguments (the request's ``args``) and returns something JSON can hold; it may be
async. A function without a docstring is refused: its docstring is what
``get_available_methods`` shows. The agent process runs with ``-OO``, which strips
docstrings from the loaded code (issue 18: 0.8 MB of an idle agent); there the help
is read back from the function's source (once per function).
"""

from __future__ import annotations

import ast
import asyncio
import functools
import importlib
import inspect
import logging
import sys
import textwrap
import types
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from hwfleet.entrypoints import entry_points

if TYPE_CHECKING:
    from hwfleet.mdp.runtime import MachineRuntime

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "hwfleet.mdp_operations"
#: hwfleet's own operation modules, in this package.
BUILTIN_MODULES = ("meta", "system", "disks", "cluster_ops")
#: Seconds one operation may run before its entry says it timed out.
DEFAULT_TIMEOUT = 20.0

Operation = Callable[..., Any]


class OperationError(Exception):
    """An operation refuses its arguments or cannot run; the message goes into the reply."""


@dataclass(slots=True)
class OperationContext:
    """What an operation may use: the agent (None outside one) and the endpoint's state."""

    operations: Operations
    runtime: MachineRuntime | None = None
    counters: Mapping[str, int] = field(default_factory=dict)
    #: Free-form state an operation module keeps between calls (cluster membership).
    state: dict[str, Any] = field(default_factory=dict)
    data_dir: str | None = None

    @property
    def simulated(self) -> bool:
        return self.runtime is not None and self.runtime.simulated


class Operations:
    """The operations by name."""

    def __init__(self) -> None:
        self._ops: dict[str, Operation] = {}

    def add(self, name: str, func: Operation) -> None:
        if not _docstring(func).strip():
            raise ValueError(f"MDP operation {name!r} has no docstring (it is the help)")
        self._ops[name] = func

    def add_module(self, module: types.ModuleType) -> None:
        for name, func in inspect.getmembers(module, inspect.isfunction):
            if not name.startswith("_") and func.__module__ == module.__name__:
                self.add(name, func)

    def names(self) -> list[str]:
        return sorted(self._ops)

    def help(self) -> dict[str, str]:
        return {name: inspect.cleandoc(_docstring(self._ops[name])) for name in self.names()}

    async def run(
        self, ctx: OperationContext, name: str, args: Any, timeout: float = DEFAULT_TIMEOUT
    ) -> dict[str, Any]:
        """One reply entry: ``{"name", "status", "result"|"error"}``; never raises."""
        func = self._ops.get(name)
        if func is None:
            return {"name": name, "status": False, "error": f"unknown operation {name!r}"}
        if args is None:
            args = {}
        if not isinstance(args, dict):
            return {"name": name, "status": False, "error": "args must be an object"}
        try:
            inspect.signature(func).bind(ctx, **args)
        except TypeError as exc:
            return {"name": name, "status": False, "error": f"bad args: {exc}"}
        try:
            async with asyncio.timeout(timeout):
                if inspect.iscoroutinefunction(func):
                    result = await func(ctx, **args)
                else:
                    result = await asyncio.to_thread(func, ctx, **args)
        except OperationError as exc:
            return {"name": name, "status": False, "error": str(exc)}
        except TimeoutError:
            return {"name": name, "status": False, "error": f"timed out after {timeout:g} s"}
        except Exception as exc:  # a plugin's bug answers as a failure, the endpoint lives
            log.exception("MDP operation %s failed", name)
            return {"name": name, "status": False, "error": f"failed: {type(exc).__name__}"}
        return {"name": name, "status": True, "result": result}


@functools.cache
def _docstring(func: Operation) -> str:
    """``func``'s docstring, from its source where ``-OO`` stripped it from the code."""
    if func.__doc__ is not None or sys.flags.optimize < 2:
        return func.__doc__ or ""
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(func)))
    except (OSError, TypeError, SyntaxError):  # no source to read: an operation without help
        return ""
    node = tree.body[0] if tree.body else None
    if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
        return ast.get_docstring(node, clean=False) or ""
    return ""


def load_operations(*, plugins: bool = True) -> Operations:
    """hwfleet's operations plus (``plugins``) those of the entry-point group."""
    ops = Operations()
    for module in BUILTIN_MODULES:
        ops.add_module(importlib.import_module(f"{__name__}.{module}"))
    if plugins:
        for entry in entry_points(group=ENTRY_POINT_GROUP):
            try:
                loaded = entry.load()
                if isinstance(loaded, types.ModuleType):
                    ops.add_module(loaded)
                else:
                    ops.add(entry.name, loaded)
            except Exception:  # one broken plugin must not take the endpoint down
                log.exception("MDP operation plugin %s could not be loaded", entry.value)
    return ops
