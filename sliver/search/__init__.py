"""Multi-objective sub-network search: ask/tell strategies, constraints, hypervolume and the resumable loop.

No torch here: a search over a tabular benchmark runs without it.
"""

from sliver.core import Constraint
from sliver.search.base import STRATEGIES, Outcome, Strategy, make_strategy, register_strategy
from sliver.search.hv import hypervolume, nondominated
from sliver.search.loop import Point, Search, SearchResult
from sliver.search.problem import Problem

__all__ = [
    "STRATEGIES", "Constraint", "Outcome", "Point", "Problem", "Search", "SearchResult", "Strategy",
    "hypervolume", "make_strategy", "nondominated", "register_strategy",
]
