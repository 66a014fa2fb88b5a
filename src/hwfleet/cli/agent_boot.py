"""The agent process's first module: ``hwfleet agent`` execs
``python -OO -X no_debug_ranges -m hwfleet.cli.agent_boot --settings-fd N``.

It puts three things in order before any other module of hwfleet loads: the
agent's modules come from the compiler helper where no bytecode is cached
(:mod:`hwfleet.agent.compiled`), msgspec imports without ``typing_extensions``
(:mod:`hwfleet.agent.lean`), and only then does :mod:`hwfleet.cli.agent_process`
read its settings and run the agent.
"""

from __future__ import annotations


def main() -> None:
    from hwfleet.agent import compiled, lean

    bundle = compiled.precompiled()
    lean.import_msgspec_lean()
    if bundle is not None:
        bundle.import_all()
    from hwfleet.cli.agent_process import main as run

    run()


if __name__ == "__main__":
    main()
