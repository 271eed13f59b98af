"""The ask/tell interface every search strategy follows, and the registry of strategies by name."""

from __future__ import annotations

import abc
import inspect
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from sliver.errors import UserError
from sliver.search.problem import Problem
from sliver.space import Config


@dataclass
class Outcome:
    """What a strategy learns about one config it asked for (or that was replayed/warm-started)."""

    values: dict[str, float] = field(default_factory=dict)
    #: every objective was measured
    ok: bool = True
    #: every constraint holds (False also for configs rejected by a cheap constraint before measuring)
    feasible: bool = True
    #: total relative constraint violation (0 when feasible)
    violation: float = 0.0


class Strategy(abc.ABC):
    """Base of search strategies: ``ask(n)`` proposes configs, ``tell(configs, outcomes)`` reports them.

    A strategy must never propose a config whose canonical key it has already
    been told about or has pending; the base class keeps that book
    (``known``, ``pending``) and a seeded ``rng``. ``log`` collects lines for
    the search log (e.g. predictor rank quality).
    """

    name = "base"
    #: batch size the search loop uses when the user gives none
    default_batch = 10

    def setup(self, problem: Problem) -> None:
        """Bind to a problem; called once by the search loop before anything is told or asked."""
        self.problem = problem
        self.space = problem.space
        self.rng = np.random.default_rng(problem.seed)
        self.known: dict[str, tuple[Config, Outcome]] = {}
        self.pending: set[str] = set()
        self.log: list[str] = []

    def ask(self, n: int) -> list[Config]:
        """Up to ``n`` new configs to evaluate (fewer, or none, when the strategy has nothing new)."""
        configs = self._ask(n)
        out = []
        for c in configs:
            k = self.space.key(c)
            if k not in self.known and k not in self.pending:
                self.pending.add(k)
                out.append(self.space.canonical(c))
        return out[:n]

    def tell(self, configs: list[Config], outcomes: list[Outcome]) -> None:
        """Report outcomes of configs (asked ones, or earlier results replayed on resume / warm start)."""
        fresh = []
        for c, o in zip(configs, outcomes):
            k = self.space.key(c)
            self.pending.discard(k)
            if k not in self.known:
                self.known[k] = (self.space.canonical(c), o)
                fresh.append((k, self.space.canonical(c), o))
        if fresh:
            self._tell(fresh)

    # ---------------------------------------------------------------- hooks
    @abc.abstractmethod
    def _ask(self, n: int) -> list[Config]:
        """Propose up to ``n`` configs; the base class drops any already known or pending."""

    def _tell(self, told: list[tuple[str, Config, Outcome]]) -> None:
        """Hook for strategies with a model of their own; the base book-keeping is already done."""

    # --------------------------------------------------------------- helpers
    def random_unseen(self, n: int, tries: int = 50) -> list[Config]:
        """Up to ``n`` uniformly drawn configs, new to this strategy and passing the cheap constraints."""
        out: list[Config] = []
        taken = set(self.known) | set(self.pending)
        for _ in range(n * tries):
            if len(out) == n:
                break
            c = self.space.canonical(self.space.sample(self.rng))
            k = self.space.key(c)
            if k in taken or not self.problem.passes_cheap(c):
                continue
            taken.add(k)
            out.append(c)
        return out

    def measured(self) -> list[tuple[str, Config, Outcome]]:
        """Known configs whose objectives were all measured, in the order they were told."""
        return [(k, c, o) for k, (c, o) in self.known.items() if o.ok]


STRATEGIES: dict[str, Callable[..., Strategy]] = {}


def register_strategy(name: str, factory: Callable[..., Strategy]) -> None:
    """Make ``make_strategy(name, **options)`` build ``factory(**options)``."""
    STRATEGIES[name] = factory


def make_strategy(name: str, **options) -> Strategy:
    """A strategy by name (``random``, ``nsga2``, ``age``, ``unsga3``, ``linas``, ``tpe``, ``optuna-gp``) with its options."""
    import sliver.search.strategies  # noqa: F401 - registers the built-in strategies

    if name not in STRATEGIES:
        raise UserError(f"strategy '{name}' is unknown; choose one of {sorted(STRATEGIES)}")
    accepted = strategy_options(name)
    unknown = sorted(set(options) - set(accepted)) if accepted is not None else []
    if unknown:  # named here, with the choices, rather than as a constructor's TypeError
        raise UserError(f"strategy '{name}': unknown option '{unknown[0]}' (check its spelling); "
                         f"its options are {accepted or 'none'}")
    try:
        return STRATEGIES[name](**options)
    except TypeError as exc:
        raise UserError(f"strategy '{name}': bad option ({exc})") from None


def strategy_options(name: str) -> list[str] | None:
    """The option names a registered strategy accepts, or None when its factory takes any (``**kwargs``)."""
    import sliver.search.strategies  # noqa: F401 - registers the built-in strategies

    params = inspect.signature(STRATEGIES[name]).parameters.values()
    if any(p.kind is p.VAR_KEYWORD for p in params):
        return None
    return [p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
