"""What a search optimises: the :class:`Problem` strategies see (its objectives and constraints are :mod:`sliver.core`'s).

Strategies see a :class:`Problem`; they never talk to an evaluator. Values are
dicts ``objective -> float``; :meth:`Problem.to_min` turns them into a matrix
where every column is to be minimised (``max`` objectives are negated).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np

from sliver.core import BUILTIN, Config, Constraint, Objective
from sliver.errors import UserError
from sliver.space import SearchSpace


@dataclass
class Problem:
    """The search problem as strategies see it.

    ``cheap`` computes the cheap objectives/metrics of a config exactly (e.g.
    params, MACs); strategies call it freely and never predict those. ``seed``
    makes every strategy deterministic.
    """

    space: SearchSpace
    objectives: list[Objective]
    constraints: list[Constraint] = field(default_factory=list)
    cheap: Callable[[Config], dict[str, float]] | None = None
    #: the cheap metrics of a whole population of encoded configs at once, ``X -> {metric: array}`` (optional)
    cheap_vectors: Callable[[np.ndarray], dict[str, np.ndarray]] | None = None
    #: metrics ``cheap`` returns (defaults to the cheap objectives); constraints on them are cheap
    cheap_metrics: list[str] | None = None
    seed: int = 0
    #: declarations of constrained metrics that are not objectives (their roles, see :meth:`declared`)
    metrics: list[Objective] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not 1 <= len(self.objectives) <= 4:
            raise UserError(f"objectives: a search takes 1 to 4 objectives, got {len(self.objectives)}")

    @property
    def names(self) -> list[str]:
        return [o.name for o in self.objectives]

    @property
    def signs(self) -> np.ndarray:
        return np.array([o.sign for o in self.objectives])

    @property
    def cheap_names(self) -> list[str]:
        return [o.name for o in self.objectives if o.cost == "cheap"]

    @property
    def expensive_names(self) -> list[str]:
        return [o.name for o in self.objectives if o.cost == "expensive"]

    def declared(self, metric: str) -> Objective | None:
        """How ``metric`` (an objective or a constrained metric) was declared; a built-in's declaration if it was not."""
        return next((o for o in self.objectives + self.metrics if o.name == metric), None) or BUILTIN.get(metric)

    def cheap_constraints(self) -> list[Constraint]:
        """Constraints decidable before measuring (their metric is computed by ``cheap``)."""
        if self.cheap is None:
            return []
        known = set(self.cheap_metrics if self.cheap_metrics is not None else self.cheap_names)
        return [c for c in self.constraints if c.metric in known]

    def cheap_values(self, config: Config) -> dict[str, float]:
        return dict(self.cheap(config)) if self.cheap is not None else {}

    def passes_cheap(self, config: Config) -> bool:
        """Whether ``config`` satisfies every cheap constraint (True when there are none)."""
        cons = self.cheap_constraints()
        if not cons:
            return True
        vals = self.cheap_values(config)
        return all(c.metric not in vals or c.ok(vals[c.metric]) for c in cons)

    def to_min(self, values: Sequence[dict[str, float]]) -> np.ndarray:
        """Matrix ``(n, n_objectives)`` of values oriented for minimisation."""
        if not len(values):
            return np.zeros((0, len(self.objectives)))
        return np.array([[v[n] for n in self.names] for v in values], dtype=float) * self.signs

    def violation(self, values: dict[str, float]) -> float:
        """Total relative constraint violation of measured ``values`` (0 = feasible)."""
        return float(sum(c.violation(values[c.metric]) for c in self.constraints if c.metric in values))

    def feasible(self, values: dict[str, float]) -> bool:
        return all(c.ok(values[c.metric]) for c in self.constraints if c.metric in values)
