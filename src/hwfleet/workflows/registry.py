"""Base tasks by name: the built-ins plus the ``hwfleet.graph_tasks`` entry-point group.

An entry point names a :class:`~hwfleet.workflows.basetasks.BaseTask` subclass; its
``name`` attribute is the ``implementsTask`` value definitions use. A plugin that fails
to load is skipped with a warning (the engine keeps serving the rest); one that tries to
replace a built-in is refused.
"""

from __future__ import annotations

import logging
from importlib.metadata import entry_points

from hwfleet.workflows.basetasks import BUILTIN, BaseTask

GROUP = "hwfleet.graph_tasks"
log = logging.getLogger(__name__)


class BaseTaskRegistry:
    def __init__(self, extra: tuple[type[BaseTask], ...] = (), *, plugins: bool = True) -> None:
        self._tasks: dict[str, type[BaseTask]] = {t.name: t for t in BUILTIN}
        for cls in extra:
            self.add(cls)
        if plugins:
            self._load_plugins()

    def add(self, cls: type[BaseTask]) -> None:
        if not (isinstance(cls, type) and issubclass(cls, BaseTask)) or not cls.name:
            raise TypeError(f"{cls!r} is not a BaseTask subclass with a name")
        if cls.name in self._tasks and self._tasks[cls.name] is not cls:
            raise ValueError(f"base task {cls.name!r} is already defined")
        self._tasks[cls.name] = cls

    def _load_plugins(self) -> None:
        for point in sorted(entry_points(group=GROUP), key=lambda p: p.name):
            try:
                self.add(point.load())
            except Exception as exc:  # a broken plugin must not stop the controller
                log.warning("skipping %s plugin %s (%s): %s", GROUP, point.name, point.value, exc)

    def get(self, name: str) -> type[BaseTask] | None:
        return self._tasks.get(name)

    def names(self) -> list[str]:
        return sorted(self._tasks)
