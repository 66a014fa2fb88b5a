"""Loopback blocks for simulated devices: a taken block is skipped, or named with the fix."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from hwfleet.sim.addresses import AddressesTakenError, address_for, pick_address_base


@pytest.fixture
def held() -> Iterator[tuple[socket.socket, int]]:
    """127.1.0.2 bound on a port of the test's own (another simulator's device 1)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.1.0.2", 0))
    try:
        yield sock, sock.getsockname()[1]
    finally:
        sock.close()


def test_a_free_block_is_kept(held: tuple[socket.socket, int]) -> None:
    _, port = held
    assert pick_address_base(1, port, "127.1.0.1", move=False) == "127.1.0.1"  # device 0 only
    assert pick_address_base(5, port, "127.1.0.3", move=False) == "127.1.0.3"


def test_a_taken_default_block_moves_to_the_next(held: tuple[socket.socket, int]) -> None:
    _, port = held
    assert pick_address_base(3, port, "127.1.0.1", move=True) == "127.2.0.1"


def test_a_chosen_block_that_is_taken_names_the_address_and_the_fix(
    held: tuple[socket.socket, int],
) -> None:
    _, port = held
    with pytest.raises(AddressesTakenError) as error:
        pick_address_base(3, port, "127.1.0.1", move=False)
    text = str(error.value)
    assert f"UDP 127.1.0.2:{port} (discovery for simulated device 1) is already in use" in text
    assert "--address-base" in text and "--discovery-port" in text and "--no-discovery" in text


def test_an_agent_on_every_address_leaves_no_block() -> None:
    # An agent binds 0.0.0.0 (with SO_REUSEADDR, as the responder does for its group).
    agent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    agent.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    agent.bind(("0.0.0.0", 0))
    port = agent.getsockname()[1]
    try:
        with pytest.raises(AddressesTakenError, match=f"UDP 127.1.0.1:{port} "):
            pick_address_base(2, port, "127.1.0.1", move=True)
    finally:
        agent.close()


def test_blocks_stay_on_loopback() -> None:
    with pytest.raises(ValueError, match=r"outside 127\.0\.0\.0/8"):
        pick_address_base(10, 9, "127.255.255.250", move=True)
    assert address_for(3, "127.2.0.1") == "127.2.0.4"
