"""Random search: uniform, seeded, never the same network twice."""

from __future__ import annotations

from sliver.search.base import Strategy, register_strategy
from sliver.space import Config


class RandomSearch(Strategy):
    """Draw configs uniformly over the genes; canonical duplicates and cheap-infeasible configs are skipped."""

    name = "random"

    def _ask(self, n: int) -> list[Config]:
        return self.random_unseen(n)


register_strategy("random", RandomSearch)
