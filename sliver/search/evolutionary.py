"""Evolutionary search through pymoo's ask/tell interface: NSGA-II (default), AGE-MOEA, U-NSGA-III.

Genes are integer choice indices; variation uses pymoo's own SBX crossover and
polynomial mutation with rounding repair. An offspring whose canonical key is
already known is answered from the book instead of being measured again, so
pymoo sees a normal generation while no network is paid for twice.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import numpy as np
from pymoo.core.evaluator import Evaluator as _PymooEvaluator
from pymoo.core.problem import Problem as _PymooProblem
from pymoo.core.termination import NoTermination
from pymoo.operators.crossover.sbx import SBX
from pymoo.operators.mutation.pm import PM
from pymoo.operators.repair.rounding import RoundingRepair
from pymoo.operators.sampling.rnd import IntegerRandomSampling
from pymoo.problems.static import StaticProblem

import sliver.search.hv  # noqa: F401 - silences pymoo's "not compiled" warning before pymoo algorithms load
from sliver.errors import UserError
from sliver.search.base import Outcome, Strategy, register_strategy
from sliver.space import Config, SearchSpace

ALGORITHMS = ("nsga2", "age", "unsga3")
#: objective value given to pymoo for a failed or cheap-rejected config (it is infeasible anyway)
_FAILED_G = 1e6


def integer_problem(space: SearchSpace, n_obj: int) -> _PymooProblem:
    """A pymoo problem over the space's integer encoding with one aggregated constraint."""
    card = space.gene_cardinalities
    return _PymooProblem(n_var=len(card), n_obj=n_obj, n_ieq_constr=1, xl=np.zeros(len(card)), xu=card - 1, vtype=int)


def make_algorithm(name: str, pop_size: int, n_obj: int):
    """A pymoo algorithm with integer operators (SBX + polynomial mutation, both rounded)."""
    ops = dict(
        sampling=IntegerRandomSampling(),
        crossover=SBX(prob=0.9, eta=15, vtype=float, repair=RoundingRepair()),
        mutation=PM(eta=20, vtype=float, repair=RoundingRepair()),
        eliminate_duplicates=True,
    )
    if name == "nsga2":
        from pymoo.algorithms.moo.nsga2 import NSGA2

        return NSGA2(pop_size=pop_size, **ops)
    if name == "age":
        try:
            from pymoo.algorithms.moo.age import AGEMOEA
        except Exception:  # pymoo raises a bare Exception when numba is missing
            raise UserError("strategy 'age' (pymoo AGE-MOEA) needs numba: pip install numba, or use nsga2/unsga3") from None

        return AGEMOEA(pop_size=pop_size, **ops)
    if name == "unsga3":
        from pymoo.algorithms.moo.unsga3 import UNSGA3
        from pymoo.util.ref_dirs import get_reference_directions

        # as many Das-Dennis directions as the population allows
        p = 1
        while math.comb(p + 1 + n_obj - 1, n_obj - 1) <= pop_size:
            p += 1
        ref_dirs = get_reference_directions("das-dennis", n_obj, n_partitions=p) if n_obj > 1 else np.ones((1, 1))
        return UNSGA3(ref_dirs=ref_dirs, pop_size=pop_size, **ops)
    raise UserError(f"evolutionary algorithm '{name}' is unknown; choose one of {list(ALGORITHMS)}")


class Evolutionary(Strategy):
    """A pymoo multi-objective evolutionary algorithm driven by ask/tell, one generation at a time."""

    def __init__(self, algorithm: str = "nsga2", pop_size: int = 50, max_idle_generations: int = 50):
        if algorithm not in ALGORITHMS:
            raise UserError(f"evolutionary algorithm '{algorithm}' is unknown; choose one of {list(ALGORITHMS)}")
        if pop_size < 2:
            raise UserError(f"pop_size must be at least 2, got {pop_size}")
        self.name = algorithm
        self.pop_size = pop_size
        self.default_batch = pop_size
        self.max_idle_generations = max_idle_generations

    def setup(self, problem) -> None:
        super().setup(problem)
        n_obj = len(problem.objectives)
        self._pproblem = integer_problem(self.space, n_obj)
        self._algo = make_algorithm(self.name, self.pop_size, n_obj)
        self._algo.setup(self._pproblem, termination=NoTermination(), seed=int(problem.seed), verbose=False)
        self._pop: Any = None  # the generation pymoo asked for and has not been told yet
        self._keys: list[str] = []
        self._queue: list[Config] = []

    def _ask(self, n: int) -> list[Config]:
        idle = 0
        while not self._queue:
            if self._pop is not None:
                if not all(k in self.known for k in self._keys):
                    return []  # part of this generation is still being measured
                self._tell_pymoo()
            if idle >= self.max_idle_generations:
                self.log.append(f"{self.name}: {idle} generations in a row held only known networks; stopping")
                return []
            self._pop = self._algo.ask()
            configs = [self.space.canonical(self.space.decode(x)) for x in self._pop.get("X")]
            self._keys = [self.space.key(c) for c in configs]
            seen: set[str] = set()
            for c, k in zip(configs, self._keys):
                if k not in self.known and k not in self.pending and k not in seen:
                    seen.add(k)
                    self._queue.append(c)
            idle = idle + 1 if not self._queue else 0
        out, self._queue = self._queue[:n], self._queue[n:]
        return out

    def _tell(self, told) -> None:
        # pymoo is told a whole generation at once, on the next ask
        return None

    def _tell_pymoo(self) -> None:
        F = np.zeros((len(self._keys), len(self.problem.objectives)))
        G = np.zeros((len(self._keys), 1))
        for i, k in enumerate(self._keys):
            _, o = self.known[k]
            F[i], G[i, 0] = _fg(self.problem, o)
        _PymooEvaluator().eval(StaticProblem(self._pproblem, F=F, G=G), self._pop)
        self._algo.tell(infills=self._pop)
        self._pop, self._keys = None, []


def _fg(problem, o: Outcome) -> tuple[np.ndarray, float]:
    if not o.ok:
        return np.zeros(len(problem.objectives)), _FAILED_G
    return problem.to_min([o.values])[0], (0.0 if o.feasible else max(o.violation, 1e-9))


for _name in ALGORITHMS:
    register_strategy(_name, functools.partial(Evolutionary, _name))  # a partial keeps the options visible
