"""Finding a BMC driver by name in the ``hwfleet.bmc_drivers`` entry-point group."""

from __future__ import annotations

from importlib.metadata import entry_points

from hwfleet.oob.driver import BmcDriver, BmcError

GROUP = "hwfleet.bmc_drivers"


def driver_names() -> list[str]:
    return sorted(ep.name for ep in entry_points(group=GROUP))


def load_driver(name: str) -> type[BmcDriver]:
    """The driver class registered as ``name``; a clear error naming the known ones."""
    for ep in entry_points(group=GROUP):
        if ep.name == name:
            cls = ep.load()
            if not (isinstance(cls, type) and issubclass(cls, BmcDriver)):
                raise BmcError("bad_input", f"entry point {GROUP}:{name} is not a BmcDriver")
            return cls
    known = ", ".join(driver_names()) or "none installed"
    raise BmcError("bad_input", f"no BMC driver {name!r} (known: {known})")
