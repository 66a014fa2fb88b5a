"""AMQP topic matching, exactly as RabbitMQ does it, for the in-process backend.

A routing key and a binding pattern are lists of words separated by ``.``.
``*`` matches exactly one word (which may be empty); ``#`` matches zero or
more words, so ``a.#.b`` matches ``a.b`` and ``#`` matches everything.

Patterns compile to a regular expression over ``"." + key``: every pattern
word then starts with its own dot, which is what lets ``#`` swallow zero words
without leaving a dangling separator.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import lru_cache

Matcher = Callable[[str], bool]

_ONE_WORD = r"\.[^.]*"
_ANY_WORDS = r"(?:\.[^.]*)*"


def _collapse(words: list[str]) -> list[str]:
    # "#.#" matches the same keys as "#"; collapsing avoids needless backtracking.
    out: list[str] = []
    for w in words:
        if w == "#" and out and out[-1] == "#":
            continue
        out.append(w)
    return out


@lru_cache(maxsize=1024)
def topic_matcher(pattern: str) -> Matcher:
    """A predicate telling whether a routing key matches the binding ``pattern``."""
    words = _collapse(pattern.split("."))
    if words == ["#"]:
        return lambda _key: True
    if "*" not in words and "#" not in words:
        return pattern.__eq__
    parts = []
    for w in words:
        if w == "#":
            parts.append(_ANY_WORDS)
        elif w == "*":
            parts.append(_ONE_WORD)
        else:
            parts.append(r"\." + re.escape(w))
    compiled = re.compile("".join(parts))

    def match(key: str) -> bool:
        # RabbitMQ splits the empty key into zero words, not one empty word.
        return compiled.fullmatch("." + key if key else "") is not None

    return match


def topic_matches(pattern: str, key: str) -> bool:
    """Whether ``key`` matches ``pattern`` (see :func:`topic_matcher`)."""
    return topic_matcher(pattern)(key)
