"""Topic matching against a direct transcription of RabbitMQ's word-by-word rules."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hwfleet.bus.routing import topic_matches


def _words(text: str) -> list[str]:
    return text.split(".") if text else []  # RabbitMQ: the empty key has zero words


def reference(pattern: list[str], key: list[str]) -> bool:
    if not pattern:
        return not key
    head, rest = pattern[0], pattern[1:]
    if head == "#":
        return any(reference(rest, key[i:]) for i in range(len(key) + 1))
    if not key:
        return False
    return (head == "*" or head == key[0]) and reference(rest, key[1:])


@pytest.mark.parametrize(
    ("pattern", "key", "expected"),
    [
        ("#", "", True),
        ("#", "a.b.c", True),
        ("*", "", False),
        ("*", "a", True),
        ("*", "a.b", False),
        ("a.#", "a", True),
        ("a.#.b", "a.b", True),
        ("a.#.b", "a.x.y.b", True),
        ("a.#.b", "a.x.y.c", False),
        ("#.b", "b", True),
        ("a.*", "a", False),
        ("a.*", "a.", True),  # one empty word
        ("a.*.#", "a.b", True),
        ("#.#", "a", True),
        ("a.b", "a.b", True),
        ("a.b", "a.bc", False),
        ("a+b.(c)", "a+b.(c)", True),  # regex characters are plain text
        ("a+b.*", "aab.x", False),
        ("", "", True),
    ],
)
def test_examples(pattern: str, key: str, expected: bool) -> None:
    assert topic_matches(pattern, key) is expected
    assert reference(_words(pattern), _words(key)) is expected


WORD = st.sampled_from(["a", "b", "c", "", "ab"])
PWORD = st.one_of(WORD, st.just("*"), st.just("#"))


@given(st.lists(PWORD, min_size=1, max_size=6), st.lists(WORD, max_size=6))
def test_same_as_reference(pattern: list[str], key: list[str]) -> None:
    p, k = ".".join(pattern), ".".join(key)
    assert topic_matches(p, k) == reference(_words(p), _words(k))
