"""Choose the sub-networks a ``fixed`` run trains, before training: the best of each size on the untrained weights.

Minitron chooses its pruned architectures before it distils them, by their
quality right after pruning: a search over the importance-sorted original
weights finds, for each size, the sub-network that loses least. Training only
those (sampling rule ``fixed``) then spends every step on the networks that
will be deployed. :func:`choose_targets` is that search: LINAS over (quality,
cost), then a hill climb per size that grows the best network within it one
gene at a time while it stays within (a front of a few dozen points rarely
has a point right at each size, and a network that leaves part of its size
unused is a worse network of that size), every measurement kept in a store so
that an interrupted choice resumes; for each size the best measured
sub-network whose cost is within it.
"""

from __future__ import annotations

from typing import Callable, Iterable, Sequence

from sliver.config import ConfigError
from sliver.core import BUILTIN, Objective
from sliver.errors import UserError
from sliver.search.base import Strategy
from sliver.space import Config


def choose_targets(supernet, quality: Callable[[Config], float], sizes: Sequence[float], *, cost: str = "params",
                   budget: int = 48, refine: int = 8, quality_name: str = "perplexity", lower_is_better: bool = True,
                   store=None, study_name: str = "targets", evaluate_name: str = "targets", seed: int = 0,
                   where: str = "") -> list[Config]:
    """For each of ``sizes`` (fractions of the largest network's ``cost``), the best sub-network within it.

    ``quality(config)`` scores the super-network's current weights with
    ``config`` active (e.g. selection perplexity); ``cost`` is a key of
    ``supernet.costs(config)`` (``params``, ``macs``, ``params_no_embed`` for a
    language model). LINAS searches ``budget`` sub-networks, the largest and
    smallest among them; then, for each size, up to ``refine`` more measure
    single-gene growths of the best network within it (:class:`GrowWithin`).
    Both searches keep their measurements in ``store`` (a
    :class:`~sliver.store.ResultStore`; None: in memory) under ``study_name``
    and ``evaluate_name``, so a rerun resumes them and, once they are finished,
    measures nothing. Sizes that pick the same network give it once; the list runs from the largest size down.
    A size below the smallest network's cost, or a cost the super-network
    does not compute, is a :class:`ConfigError` naming the field (its path
    prefixed by ``where``, e.g. ``"train.sampling.targets."``).
    """
    from sliver.search import Search

    top, bottom = supernet.costs(supernet.max_config()), supernet.costs(supernet.min_config())
    if cost not in top:
        raise ConfigError(f"field '{where}cost': {cost!r} is not a cost of this super-network; it has {sorted(top)}")
    full, least = float(top[cost]), float(bottom[cost])
    for i, size in enumerate(sizes):
        if not 0.0 < size <= 1.0:
            raise ConfigError(f"field '{where}sizes[{i}]': {size} is not a fraction of the largest network in (0, 1]")
        if size * full < least:
            raise ConfigError(f"field '{where}sizes[{i}]': {size} is below the smallest sub-network ({least / full:.3f} of the "
                              f"largest's {cost}); give a larger size")
    objectives = [Objective(quality_name, "min" if lower_is_better else "max", "", "expensive", f"selection {quality_name}"),
                  # measured with the quality (one call per network), yet exact: the additive GP fits it from few points
                  Objective(cost, "min", "", "expensive", BUILTIN[cost].description if cost in BUILTIN else cost,
                            additive=True)]

    def evaluate(config: Config) -> dict[str, float]:
        supernet.activate(config)
        return {quality_name: float(quality(config)), cost: float(supernet.costs(config)[cost])}

    was_training = supernet.training
    supernet.eval()
    try:
        if store is None:  # one store for both searches: the climb starts from what LINAS measured
            from sliver.store import ResultStore

            store = ResultStore("sqlite://")
        result = Search(supernet.space, objectives, evaluate=evaluate, evaluate_name=evaluate_name, strategy="linas",
                        budget=budget, store=store, study_name=study_name, strategy_options={"extremes": True},
                        seed=seed).run()
        points = list(result.points)
        if refine > 0:
            grow = GrowWithin(lambda c: float(supernet.costs(c)[cost]), [s * full for s in sizes], cost, quality_name,
                              lower_is_better)
            points += Search(supernet.space, objectives, evaluate=evaluate, evaluate_name=evaluate_name, strategy=grow,
                             budget=refine * len(sizes), store=store, study_name=f"{study_name}:grow", warm_start=True,
                             seed=seed).run().points
    finally:
        supernet.train(was_training)
    measured = [p for p in points if p.ok]
    chosen: list[Config] = []
    for size in sorted(sizes, reverse=True):
        best = best_within(measured, cost, size * full, quality_name, lower_is_better)
        if best is None:
            raise UserError(f"no sub-network within {size} of the largest {cost} was measured (failed evaluations: "
                            f"{len(points) - len(measured)}); see the search's log, or give a larger budget")
        if best.config not in chosen:
            chosen.append(best.config)
    return chosen


def best_within(points: Iterable, cost: str, limit: float, quality: str, lower_is_better: bool = True):
    """The point (anything with ``config`` and ``values``) with the best ``quality`` among those whose ``cost``
    is at most ``limit``; None when there is none."""
    inside = [p for p in points if p.values[cost] <= limit]
    sign = 1.0 if lower_is_better else -1.0
    return min(inside, key=lambda p: sign * p.values[quality]) if inside else None


class GrowWithin(Strategy):
    """Hill climbing under cost limits: grow the best measured network within each limit, one gene at a time.

    For each limit in turn, the candidates are the single-gene changes of the
    best measured network within it (``quality``, lower or higher better) that
    cost more than it and no more than the limit, tried most costly first, so
    the unused part of the limit is filled by the growth that fills it most;
    a measured candidate that scores better becomes the network to grow. A
    limit whose best network has no untried growth left is skipped, and when
    every limit is, the strategy has nothing more to ask. ``cost_of(config)``
    must be cheap (it is called for every candidate, not measured).
    """

    name = "grow-within"
    default_batch = 1

    def __init__(self, cost_of: Callable[[Config], float], limits: Sequence[float], cost: str, quality: str,
                 lower_is_better: bool = True):
        self.cost_of, self.limits, self.cost = cost_of, list(limits), cost
        self.quality, self.sign = quality, 1.0 if lower_is_better else -1.0

    def _ask(self, n: int) -> list[Config]:
        out: list[Config] = []
        start = len(self.known)  # the limits take turns; counted from what is told, so a resumed climb goes on alike
        for i in range(len(self.limits)):
            candidate = self._next_growth(self.limits[(start + i) % len(self.limits)], taken=out)
            if candidate is not None:
                out.append(candidate)
                if len(out) == n:
                    break
        return out

    def _next_growth(self, limit: float, taken: list[Config]) -> Config | None:
        """The costliest untried single-gene growth of the best measured network within ``limit`` that fits it."""
        inside = [(c, o) for _, c, o in self.measured() if o.values[self.cost] <= limit]
        if not inside:
            return None
        best, outcome = min(inside, key=lambda co: self.sign * co[1].values[self.quality])
        skip = set(self.known) | self.pending | {self.space.key(c) for c in taken}
        fits = []
        for row in self.space.neighbour_vectors(self.space.encode(best)[None, :]):
            config = self.space.decode(row)
            c = self.cost_of(config)
            if outcome.values[self.cost] < c <= limit and self.space.key(config) not in skip:
                fits.append((c, config))
        return max(fits, key=lambda t: t[0])[1] if fits else None
