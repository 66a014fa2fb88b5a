"""The agent's diagnostics endpoint as ``hwfleet agent`` runs it (:func:`mdp_serving`): the
socket is bound and the key handed over at start, the endpoint behind it is built on the
first datagram (issue 18), and from then on it answers and refuses exactly as before."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from tests.integration.mdp.conftest import RawClient
from tests.unit.agent.agent_kit import sim_runtime

from hwfleet.mdp import wire
from hwfleet.mdp.serve import MdpOptions, _FirstDatagram, mdp_serving


def options(port: int = 0) -> MdpOptions:
    return MdpOptions(bind="127.0.0.1", port=port)


async def test_bound_at_start_built_on_the_first_datagram_then_answers(
    tmp_path: Path, deadline: float
) -> None:
    runtime = sim_runtime(tmp_path)
    async with mdp_serving(runtime, options()):
        assert runtime.mdp_port != 0
        key = runtime.mdp_key
        assert key is not None and (tmp_path / "mdp.key").read_text().strip() == key.hex()
        client = RawClient(runtime.mdp_port, key)
        try:
            wrong = wire.sign(b"\x22" * 32, {"operations": [{"name": "endpoint_stats"}]})
            # The first datagram (a forged one) builds the endpoint and is dropped silently.
            assert await client.silent(wire.encode(wrong), deadline)
            req = client.request([{"name": "endpoint_stats"}, {"name": "load_and_memory"}])
            await client.send(wire.encode(req))
            [reply] = await client.until(req["nonce"], deadline)
        finally:
            client.close()
    assert wire.verify(key, reply) and reply["status"] is True
    stats, load = reply["operations"]
    assert load["result"]["cpus"] >= 1
    assert stats["result"]["bad_key"] == 1


async def test_an_endpoint_that_cannot_be_built_is_logged_once_and_datagrams_dropped(
    caplog: pytest.LogCaptureFixture,
) -> None:
    builds = 0

    def build() -> Any:
        nonlocal builds
        builds += 1
        raise RuntimeError("operation table broken")

    first = _FirstDatagram(build)
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(lambda: first, local_addr=("127.0.0.1", 0))
    try:
        for _ in range(3):  # called as the transport would: nothing may escape
            first.datagram_received(b"junk", ("127.0.0.1", 9))
    finally:
        transport.close()
    assert builds == 1 and first.broken and first.dropped == 3
    errors = [r for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 1 and "could not be built" in errors[0].getMessage()
    assert errors[0].exc_info is not None and "operation table broken" in str(errors[0].exc_info[1])


async def test_the_socket_is_closed_with_the_agent_whether_or_not_it_was_used(
    tmp_path: Path,
) -> None:
    runtime = sim_runtime(tmp_path)
    async with mdp_serving(runtime, options()):
        port = runtime.mdp_port
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", port))  # free again: the agent let go of it


async def test_a_port_in_use_is_logged_and_the_agent_carries_on(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind(("127.0.0.1", 0))
        runtime = sim_runtime(tmp_path)
        async with mdp_serving(runtime, options(taken.getsockname()[1])):
            assert runtime.mdp_port == 0
    assert "diagnostics endpoint not started" in caplog.text and "in use" in caplog.text


SERVE_THEN_QUERY = """
import asyncio, sys
from pathlib import Path
import hwfleet.agent.lean
hwfleet.agent.lean.import_msgspec_lean()
import hwfleet.agent.main, hwfleet.agent.links.stream
import hwfleet.discovery.responder
from hwfleet.mdp.serve import MdpOptions, mdp_serving
# Checked before the test kit loads: its simulated hardware (hwfleet.sim) uses dataclasses.
LEFT_OUT = ("dataclasses", "msgspec._typing_utils", "platform", "random", "secrets")
print("agent:", [m for m in LEFT_OUT if m in sys.modules])
import tempfile  # (it imports random)
from tests.unit.agent.agent_kit import sim_runtime

HEAVY = ("hwfleet.mdp.operations", "hwfleet.mdp.endpoint", "hwfleet.discovery.packets",
         "typing_extensions")

async def main():
    runtime = sim_runtime(Path(tempfile.mkdtemp()))
    async with mdp_serving(runtime, MdpOptions(bind="127.0.0.1", port=0)):
        print("idle:", [m for m in HEAVY if m in sys.modules])
        from hwfleet.mdp.client import call

        reply = await call("127.0.0.1", runtime.mdp_key, [{"name": "endpoint_stats"}],
                           port=runtime.mdp_port, timeout=30)
        print("queried:", reply["status"], "hwfleet.mdp.operations" in sys.modules)
        # -OO stripped the docstrings from the code; the help is read from the source.
        reply = await call("127.0.0.1", runtime.mdp_key, [{"name": "get_available_methods"}],
                           port=runtime.mdp_port, timeout=30)
        print("help:", reply["operations"][0]["result"]["endpoint_stats"].split(" by ")[0])
        # msgspec.inspect is only deferred (hwfleet.agent.lean): its first use loads it.
        import msgspec
        print("inspect:", msgspec.inspect.type_info(MdpOptions).fields[0].name)

asyncio.run(main())
"""


def test_an_idle_agent_loads_no_operations_and_no_packet_parser() -> None:
    """What issue 18 keeps out of an idle agent, checked in a fresh interpreter run with -OO
    as the agent process is."""
    out = subprocess.run(
        [sys.executable, "-OO", "-c", SERVE_THEN_QUERY],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
        cwd=Path(__file__).parents[3],
    )
    assert out.stdout.splitlines() == [
        "agent: []",
        "idle: []",
        "queried: True True",
        "help: Datagrams received, answered and dropped",
        "inspect: bind",
    ], out.stderr
