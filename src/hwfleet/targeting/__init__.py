"""Target expressions (DESIGN §8): which devices a command acts on.

``parse`` turns the text into a tree (:mod:`hwfleet.targeting.grammar`); an
:class:`Evaluator` resolves it over a snapshot of the fleet and its groups
(:mod:`hwfleet.targeting.evaluate`). The controller resolves every expression
(``GET /api/v1/targets``), so every client shares one rule.
"""

from hwfleet.store.groups import StoredGroup
from hwfleet.targeting.evaluate import MIN_PREFIX, Evaluator, short_prefixes
from hwfleet.targeting.grammar import TargetError, is_single, parse, unparse

__all__ = [
    "MIN_PREFIX",
    "Evaluator",
    "StoredGroup",
    "TargetError",
    "is_single",
    "parse",
    "short_prefixes",
    "unparse",
]
