"""Names that resolve on first use: package exports (PEP 562) and ``module:attr`` references.

An agent imports only the submodules it needs this way, so the controller-side
halves of shared packages (trust/, discovery/) never cost it memory, and a
command's module is imported when the command first arrives (issue 18).
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping
from typing import Any


def lazy_exports(package: str, exports: Mapping[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` for ``package``: ``exports`` maps a name to its submodule."""

    def __getattr__(name: str) -> Any:
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f"{package}.{module}"), name)
        setattr(sys.modules[package], name, value)  # resolved once, then a plain attribute
        return value

    return __getattr__


def resolve(reference: str) -> Any:
    """What ``"package.module:attr.path"`` names (the entry-point syntax), importing the module."""
    module, _, attrs = reference.partition(":")
    target: Any = importlib.import_module(module.strip())
    for attr in filter(None, attrs.strip().split(".")):
        target = getattr(target, attr)
    return target
