"""The agent's own process image: ``hwfleet agent`` parses its options, then becomes this.

typer, click and everything they import stay resident once loaded: a quarter
of an idle agent's memory, for a parser used once at start (issue 18). So
``hwfleet agent`` reads and checks its settings as every command does, writes
them to an anonymous in-memory file and ``exec``s
``python -OO -X no_debug_ranges -m hwfleet.cli.agent_boot --settings-fd N``
(:mod:`hwfleet.cli.agent_boot`, which then runs :func:`main` here): the same process —
same pid, stdio and signals, so systemd and scripts see no difference — with a
fresh interpreter that imports only what the agent runs. The settings, the
enrollment secret among them, travel in that file, never in argv or the
environment. Where ``memfd_create`` or ``exec`` is missing (not Linux), or
``HWFLEET_AGENT_EXEC=0`` is set, the agent runs in the parsing process as before.

This module must not import typer (or anything that does): that is its point.
"""

from __future__ import annotations

import asyncio
import os
import sys

# isort: off
import hwfleet.agent.lean

# Before msgspec's first import: keeps typing_extensions out (see hwfleet.agent.lean).
hwfleet.agent.lean.import_msgspec_lean()
import msgspec  # noqa: E402

# isort: on
from hwfleet.errors import CliError  # noqa: E402
from hwfleet.settings import AgentSettings  # noqa: E402

FD_OPTION = "--settings-fd"
#: Set to "0" to keep the agent in the process that parsed its options (debugging).
EXEC_VARIABLE = "HWFLEET_AGENT_EXEC"


class Handoff(msgspec.Struct, forbid_unknown_fields=True):
    """What the parsing process hands the agent process."""

    settings: AgentSettings
    device_index: int = 0
    #: Where each setting came from (flag, variable, file), for error messages.
    origins: dict[str, str] = msgspec.field(default_factory=dict)


def become_agent(handoff: Handoff) -> None:
    """Replace this process with the agent process; returns only where that is impossible."""
    if os.environ.get(EXEC_VARIABLE) == "0" or not hasattr(os, "memfd_create"):
        return
    # Without MFD_CLOEXEC: the descriptor must survive exec; the agent closes it on reading.
    fd = os.memfd_create("hwfleet-agent-settings", 0)
    data = memoryview(msgspec.json.encode(handoff))
    while data:
        data = data[os.write(fd, data) :]
    os.lseek(fd, 0, os.SEEK_SET)
    sys.stdout.flush()
    sys.stderr.flush()
    # -OO: no docstrings in the loaded code (0.5 MB of an idle agent, issue 18); the
    # agent's asserts only narrow types, and MDP help is read from source instead.
    # no_debug_ranges: the modules the agent compiles at start keep no column tables
    # (0.1 MB); tracebacks still name every line.
    argv = [sys.executable, "-OO", "-X", "no_debug_ranges", "-m", "hwfleet.cli.agent_boot"]
    argv += [FD_OPTION, str(fd)]
    os.execv(sys.executable, argv)  # noqa: S606 - our own interpreter, arguments we built


def read_handoff(argv: list[str]) -> Handoff:
    if len(argv) != 2 or argv[0] != FD_OPTION or not argv[1].isdigit():
        raise CliError(
            f"hwfleet.cli.agent_boot is started by `hwfleet agent` ({FD_OPTION} N); "
            "run `hwfleet agent --help`"
        )
    try:
        with os.fdopen(int(argv[1]), "rb") as source:
            return msgspec.json.decode(source.read(), type=Handoff)
    except (OSError, msgspec.DecodeError) as exc:
        raise CliError(
            f"could not read the agent's settings from descriptor {argv[1]}: {exc}"
        ) from None


def run_agent_process(handoff: Handoff) -> None:
    """Run the agent until SIGINT/SIGTERM (both the exec'd and the in-process path)."""
    from hwfleet.agent.datadir_lock import data_dir_lock
    from hwfleet.agent.main import build_runtime, run_agent
    from hwfleet.cli.common import run, setup_logging, until_signalled, with_source

    settings = handoff.settings
    setup_logging(settings.log_level)
    hwfleet.agent.lean.small_tls_buffers()

    async def main(stop: asyncio.Event) -> None:
        with data_dir_lock(settings.data_dir):
            if settings.simulate:
                from hwfleet.sim.fleet import simulated_runtime

                runtime = simulated_runtime(
                    settings.simulate, handoff.device_index, settings.data_dir
                )
            else:
                runtime = build_runtime(settings)
            await run_agent(settings, runtime, stop)

    try:
        run(until_signalled(main), fast=False)
    except ValueError as exc:
        raise CliError(str(exc)) from None
    except ConnectionError as exc:  # the broker (BusUnavailableError) refused or is unreachable
        raise CliError(with_source(str(exc), "bus", handoff.origins)) from None


def main() -> None:
    try:
        run_agent_process(read_handoff(sys.argv[1:]))
    except CliError as exc:
        sys.stderr.write(f"hwfleet: {exc}\n")
        sys.exit(1)
